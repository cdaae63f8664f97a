//! The agent's settings: built-in defaults ← the TOML file ← the
//! environment (`TERMINAL_*`), key by key. Unknown keys are refused, and a
//! wrong value stops the agent with one line naming the key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use proto::order::{StoreId, TerminalId};
use serde::Deserialize;

use crate::device::PortSpec;

/// Where the local counter screen and its API listen unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";

/// Everything `terminal run` needs, checked.
#[derive(Clone)]
pub struct Config {
    /// e.g. `http://gateway.local:8080`.
    pub gateway_url: String,
    pub terminal_id: TerminalId,
    /// The terminal's API key (never logged nor shown).
    pub key: String,
    pub store_id: StoreId,
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    pub heartbeat: Duration,
    pub catalog_refresh: Duration,
    /// Pause after a failed upload before the next try (doubles to 30 s).
    pub upload_retry: Duration,
    /// A sale the gateway refused is tried again after this long.
    pub held_retry: Duration,
    /// Limit for one call to the gateway.
    pub request_timeout: Duration,
    pub devices: Devices,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("gateway_url", &self.gateway_url)
            .field("terminal_id", &self.terminal_id)
            .field("key", &"<redacted>")
            .field("store_id", &self.store_id)
            .field("state_dir", &self.state_dir)
            .field("listen", &self.listen)
            .field("heartbeat", &self.heartbeat)
            .field("catalog_refresh", &self.catalog_refresh)
            .field("upload_retry", &self.upload_retry)
            .field("held_retry", &self.held_retry)
            .field("request_timeout", &self.request_timeout)
            .field("devices", &self.devices)
            .finish()
    }
}

/// The counter's devices, each optional. Recorded and checked in this
/// step; the agent does not drive them yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Devices {
    pub printer: Option<PortSpec>,
    pub scale: Option<PortSpec>,
    pub scanner: Option<PortSpec>,
    pub display: Option<PortSpec>,
}

/// A refused configuration: one line, naming the key (and its variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    gateway_url: Option<String>,
    terminal_id: Option<String>,
    key: Option<String>,
    store_id: Option<String>,
    state_dir: Option<PathBuf>,
    listen: Option<String>,
    heartbeat_s: Option<u64>,
    catalog_refresh_s: Option<u64>,
    upload_retry_ms: Option<u64>,
    held_retry_s: Option<u64>,
    request_timeout_ms: Option<u64>,
    devices: Option<FileDevices>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDevices {
    printer: Option<String>,
    scale: Option<String>,
    scanner: Option<String>,
    display: Option<String>,
}

/// Reads `path` (if any) and the environment through `env`, and checks
/// the result.
pub fn load(
    path: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| ConfigError(format!("{}: cannot read: {e}", p.display())))?;
            parse_file(p, &text)?
        }
        None => FileConfig::default(),
    };
    merge(file, &env)
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let msg = e.message().replace('\n', " ");
        match line {
            Some(n) => ConfigError(format!("{}: line {n}: {}", path.display(), msg.trim())),
            None => ConfigError(format!("{}: {}", path.display(), msg.trim())),
        }
    })
}

/// A setting's two names, for messages.
struct Key {
    toml: &'static str,
    env: &'static str,
}

const GATEWAY_URL: Key = Key {
    toml: "gateway_url",
    env: "TERMINAL_GATEWAY_URL",
};
const TERMINAL: Key = Key {
    toml: "terminal_id",
    env: "TERMINAL_ID",
};
const KEY: Key = Key {
    toml: "key",
    env: "TERMINAL_KEY",
};
const STORE: Key = Key {
    toml: "store_id",
    env: "TERMINAL_STORE_ID",
};
const STATE_DIR: Key = Key {
    toml: "state_dir",
    env: "TERMINAL_STATE_DIR",
};
const LISTEN: Key = Key {
    toml: "listen",
    env: "TERMINAL_LISTEN",
};
const HEARTBEAT: Key = Key {
    toml: "heartbeat_s",
    env: "TERMINAL_HEARTBEAT_S",
};
const CATALOG: Key = Key {
    toml: "catalog_refresh_s",
    env: "TERMINAL_CATALOG_REFRESH_S",
};
const UPLOAD_RETRY: Key = Key {
    toml: "upload_retry_ms",
    env: "TERMINAL_UPLOAD_RETRY_MS",
};
const HELD_RETRY: Key = Key {
    toml: "held_retry_s",
    env: "TERMINAL_HELD_RETRY_S",
};
const TIMEOUT: Key = Key {
    toml: "request_timeout_ms",
    env: "TERMINAL_REQUEST_TIMEOUT_MS",
};
const PRINTER: Key = Key {
    toml: "devices.printer",
    env: "TERMINAL_PRINTER",
};
const SCALE: Key = Key {
    toml: "devices.scale",
    env: "TERMINAL_SCALE",
};
const SCANNER: Key = Key {
    toml: "devices.scanner",
    env: "TERMINAL_SCANNER",
};
const DISPLAY: Key = Key {
    toml: "devices.display",
    env: "TERMINAL_DISPLAY",
};

impl Key {
    fn bad(&self, why: impl fmt::Display) -> ConfigError {
        ConfigError(format!("{} ({}): {why}", self.toml, self.env))
    }

    /// The environment's value if set (and not empty), else the file's.
    fn pick(&self, env: &impl Fn(&str) -> Option<String>, file: Option<String>) -> Option<String> {
        env(self.env).filter(|v| !v.is_empty()).or(file)
    }

    fn required(
        &self,
        env: &impl Fn(&str) -> Option<String>,
        file: Option<String>,
    ) -> Result<String, ConfigError> {
        self.pick(env, file).ok_or_else(|| {
            self.bad("is required (in the file given by --config or the environment)")
        })
    }

    fn number(
        &self,
        env: &impl Fn(&str) -> Option<String>,
        file: Option<u64>,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let v = match env(self.env).filter(|v| !v.is_empty()) {
            Some(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| self.bad(format!("must be a whole number, got {s:?}")))?,
            None => file.unwrap_or(default),
        };
        if !(min..=max).contains(&v) {
            return Err(self.bad(format!("must be between {min} and {max}, got {v}")));
        }
        Ok(v)
    }

    fn port(
        &self,
        env: &impl Fn(&str) -> Option<String>,
        file: Option<String>,
    ) -> Result<Option<PortSpec>, ConfigError> {
        self.pick(env, file)
            .map(|s| PortSpec::from_str(s.trim()).map_err(|e| self.bad(e)))
            .transpose()
    }
}

fn merge(file: FileConfig, env: &impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let gateway_url = GATEWAY_URL.required(env, file.gateway_url)?;
    let gateway_url = gateway_url.trim().trim_end_matches('/').to_owned();
    if !(gateway_url.starts_with("http://") || gateway_url.starts_with("https://"))
        || gateway_url.len() <= "https://".len()
    {
        return Err(GATEWAY_URL.bad(format!(
            "must be an http:// or https:// URL, got {gateway_url:?}"
        )));
    }
    let terminal_id = TerminalId::parse(TERMINAL.required(env, file.terminal_id)?.trim())
        .map_err(|e| TERMINAL.bad(e.message))?;
    let key = KEY.required(env, file.key)?.trim().to_owned();
    if key.is_empty() {
        return Err(KEY.bad("is empty"));
    }
    let store_id = StoreId::parse(STORE.required(env, file.store_id)?.trim())
        .map_err(|e| STORE.bad(e.message))?;
    let state_dir = match env(STATE_DIR.env).filter(|v| !v.is_empty()) {
        Some(s) => PathBuf::from(s),
        None => file.state_dir.ok_or_else(|| {
            STATE_DIR.bad("is required (in the file given by --config or the environment)")
        })?,
    };
    let listen = LISTEN
        .pick(env, file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = listen.trim().parse::<SocketAddr>().map_err(|_| {
        LISTEN.bad(format!(
            "must be an address like {DEFAULT_LISTEN}, got {listen:?}"
        ))
    })?;
    let heartbeat = HEARTBEAT.number(env, file.heartbeat_s, 30, 1, 3600)?;
    let catalog_refresh = CATALOG.number(env, file.catalog_refresh_s, 60, 1, 86_400)?;
    let upload_retry = UPLOAD_RETRY.number(env, file.upload_retry_ms, 1000, 10, 60_000)?;
    let held_retry = HELD_RETRY.number(env, file.held_retry_s, 60, 1, 86_400)?;
    let timeout = TIMEOUT.number(env, file.request_timeout_ms, 10_000, 100, 120_000)?;
    let d = file.devices.unwrap_or_default();
    let devices = Devices {
        printer: PRINTER.port(env, d.printer)?,
        scale: SCALE.port(env, d.scale)?,
        scanner: SCANNER.port(env, d.scanner)?,
        display: DISPLAY.port(env, d.display)?,
    };
    Ok(Config {
        gateway_url,
        terminal_id,
        key,
        store_id,
        state_dir,
        listen,
        heartbeat: Duration::from_secs(heartbeat),
        catalog_refresh: Duration::from_secs(catalog_refresh),
        upload_retry: Duration::from_millis(upload_retry),
        held_retry: Duration::from_secs(held_retry),
        request_timeout: Duration::from_millis(timeout),
        devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const FULL: &str = r#"
gateway_url = "http://127.0.0.1:8080/"
terminal_id = "S001-T01"
key = "gk_secret"
store_id = "S001"
state_dir = "/var/lib/terminal"
listen = "127.0.0.1:7701"
heartbeat_s = 15

[devices]
printer = "1A86:7523"
scanner = "/dev/ttyACM0"
"#;

    fn from(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let file = parse_file(Path::new("terminal.toml"), text)?;
        merge(file, &|k: &str| env.get(k).cloned())
    }

    #[test]
    fn a_complete_file_is_read_and_the_environment_wins() {
        let c = from(FULL, &[]).expect("config");
        assert_eq!(c.gateway_url, "http://127.0.0.1:8080");
        assert_eq!(c.terminal_id.as_str(), "S001-T01");
        assert_eq!(c.listen.to_string(), "127.0.0.1:7701");
        assert_eq!(c.heartbeat, Duration::from_secs(15));
        assert_eq!(c.catalog_refresh, Duration::from_secs(60));
        assert!(matches!(
            c.devices.printer,
            Some(PortSpec::Usb {
                vid: 0x1A86,
                pid: 0x7523,
                serial: None
            })
        ));
        assert!(matches!(c.devices.scanner, Some(PortSpec::Path(_))));
        assert!(!format!("{c:?}").contains("gk_secret"));

        let c = from(
            FULL,
            &[
                ("TERMINAL_KEY", "other"),
                ("TERMINAL_LISTEN", "0.0.0.0:9000"),
                ("TERMINAL_SCALE", "0403:6001:A1"),
            ],
        )
        .expect("config");
        assert_eq!(c.key, "other");
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert!(c.devices.scale.is_some());
    }

    #[test]
    fn defaults_and_environment_only() {
        let c = from(
            "",
            &[
                ("TERMINAL_GATEWAY_URL", "https://gw.example"),
                ("TERMINAL_ID", "T1"),
                ("TERMINAL_KEY", "k"),
                ("TERMINAL_STORE_ID", "S002"),
                ("TERMINAL_STATE_DIR", "/tmp/x"),
            ],
        )
        .expect("config");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.heartbeat, Duration::from_secs(30));
        assert_eq!(c.devices, Devices::default());
    }

    #[test]
    fn bad_files_are_refused_with_one_line() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("colour = 1\n", &[], "line 1: unknown field `colour`"),
            ("gateway_url = \n", &[], "line 1"),
            ("", &[], "gateway_url (TERMINAL_GATEWAY_URL): is required"),
            (
                &FULL.replace("http://127", "ftp://127"),
                &[],
                "gateway_url (TERMINAL_GATEWAY_URL): must be",
            ),
            (
                &FULL.replace("S001-T01", "S001 T01"),
                &[],
                "terminal_id (TERMINAL_ID)",
            ),
            (
                &FULL.replace("127.0.0.1:7701", "localhost"),
                &[],
                "listen (TERMINAL_LISTEN)",
            ),
            (
                FULL,
                &[("TERMINAL_HEARTBEAT_S", "0")],
                "heartbeat_s (TERMINAL_HEARTBEAT_S): must be between 1",
            ),
            (
                FULL,
                &[("TERMINAL_HEARTBEAT_S", "ten")],
                "must be a whole number",
            ),
            (
                &FULL.replace("scanner", "till"),
                &[],
                "unknown field `till`",
            ),
            (
                &FULL.replace("store_id = \"S001\"", ""),
                &[],
                "store_id (TERMINAL_STORE_ID): is required",
            ),
        ];
        for (text, env, want) in cases {
            let e = from(text, env).expect_err(want);
            assert!(e.0.contains(want), "{:?} should contain {want:?}", e.0);
            assert!(!e.0.contains('\n'), "one line: {:?}", e.0);
        }
    }
}
