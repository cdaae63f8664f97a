//! Customer display driver (CD5220): two lines of 20 characters.

use proto::device::display;
use proto::order::Money;

use super::{Connect, Port, Result, lifecycle};

pub struct Display<C: Connect> {
    port: Port<C>,
    shown: (String, String),
}

impl<C: Connect> Display<C> {
    pub fn new(connect: C) -> Self {
        Display {
            port: Port::new("display", connect),
            shown: (String::new(), String::new()),
        }
    }

    lifecycle!();

    pub async fn enable(&mut self) -> Result<()> {
        self.port.enable()?;
        self.port.ensure_connected().await?;
        self.port.write_all(&display::reset()).await?;
        self.redraw().await
    }

    async fn redraw(&mut self) -> Result<()> {
        let bytes = display::show(&self.shown.0, &self.shown.1);
        self.port.write_all(&bytes).await
    }

    /// Shows two lines. After a replug the display is reset and shows them
    /// again, so it never keeps a stale total.
    pub async fn show(&mut self, upper: &str, lower: &str) -> Result<()> {
        self.shown = (upper.to_owned(), lower.to_owned());
        if self.port.ensure_connected().await? {
            self.port.write_all(&display::reset()).await?;
        }
        self.redraw().await
    }

    /// An item and its price, right-aligned.
    pub async fn item(&mut self, name: &str, price: Money) -> Result<()> {
        self.show(name, &right(&price.to_string())).await
    }

    pub async fn total(&mut self, total: Money) -> Result<()> {
        self.show("TOTAL", &right(&total.to_string())).await
    }

    pub async fn change(&mut self, paid: Money, change: Money) -> Result<()> {
        self.show(&format!("PAID {paid:>15}"), &format!("CHANGE {change:>13}"))
            .await
    }
}

fn right(s: &str) -> String {
    format!("{s:>width$}", width = display::WIDTH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Once;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn writes_cd5220_lines() {
        let (host, mut dev) = tokio::io::duplex(1024);
        let mut d = Display::new(Once::new(host));
        d.open();
        d.claim(Duration::from_secs(1)).await.unwrap();
        d.enable().await.unwrap();
        d.total(Money::from_fen(1250)).await.unwrap();
        drop(d);
        let mut got = vec![];
        dev.read_to_end(&mut got).await.unwrap();
        let want = [
            &display::reset()[..],
            &display::show("", ""),
            &display::show("TOTAL", "               12.50"),
        ]
        .concat();
        assert_eq!(got, want);
    }
}
