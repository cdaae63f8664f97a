// The store board. Reads the store's aggregated queue (GET …/orders), then
// follows its feed (GET …/orders/stream) from the queue's cursor, resuming
// with Last-Event-ID after any break; acts through POST /api/v1/orders/{id}/{action}.
// Every value from the server is put on screen as text, never as markup.
"use strict";

(function () {
  const STORE = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
  const KEY_SLOT = "board.key." + STORE;
  const params = new URLSearchParams(location.search);
  // Age thresholds in seconds (?warn=…&late=…), within 1 s to 1 day.
  const seconds = (name, dflt) => {
    const v = params.get(name);
    if (v === null || !/^\d{1,5}$/.test(v)) return dflt;
    const n = parseInt(v, 10);
    return n >= 1 && n <= 86400 ? n : dflt;
  };
  const WARN_S = seconds("warn", 300);
  const LATE_S = seconds("late", 600);
  const KEEP_FINAL = 8; // cards kept in each final column
  const STALE_MS = 40000; // no byte (not even the 15 s keep-alive) for this long: reconnect

  const STATUS = {
    created: "新订单", accepted: "制作中", ready: "待取餐",
    completed: "已完成", rejected: "已拒单", cancelled: "已取消",
  };
  const CHANNEL = { terminal: "门店收银", official: "官方小程序", third_party: "外卖" };
  const PLATFORM = { meituan: "美团" }; // others show the name they are configured under
  const ATTENTION = {
    unmapped_items: "有未对应商品", short_stock: "库存不足",
    unavailable_items: "有已下架商品", unconfirmed: "超时未接单", refund_requested: "顾客申请退款",
  };
  const PAYMENT = { unpaid: "未付", pending: "支付中", paid: "已付", partially_refunded: "部分退款", refunded: "已退款" };

  const $ = (id) => document.getElementById(id);
  const orders = new Map(); // id → order (plus board-only fields: _alerted, _recalled)
  // id → the platform's details (its daily number, refund state, alert), or "pending".
  const details = new Map();
  let key = localStorage.getItem(KEY_SLOT) || "";
  let lastId = null; // the feed position everything on screen is up to
  let needLoad = true;
  let attempt = 0;
  let controller = null;
  let lastByte = 0;
  let skewMs = 0; // server clock minus ours, from the Date header
  let audio = null;
  let tick = 0;
  let retryTimer = null;

  $("store").textContent = STORE;

  // ---------------------------------------------------------------- health
  function health(state, text) {
    const c = $("conn");
    c.dataset.state = state;
    c.textContent = text;
  }

  function toast(text, bad) {
    const t = $("toast");
    t.textContent = text;
    t.className = bad ? "bad" : "";
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
  }

  // ------------------------------------------------------------------ sound
  function soundOn() { return audio !== null && audio.state === "running"; }

  function showSound() {
    const b = $("sound");
    b.dataset.state = soundOn() ? "on" : "off";
    b.textContent = soundOn() ? "♪ 声音已开" : "✕ 点击启用声音";
  }

  function enableSound() {
    try {
      if (audio === null) audio = new AudioContext();
      const done = () => { showSound(); if (soundOn()) beep(660, 0.12); };
      audio.resume().then(done, done);
      audio.onstatechange = showSound;
    } catch (e) {
      toast("此浏览器不能发声：" + e, true);
    }
  }

  // A square-wave tone made here: no audio file to fetch.
  function beep(freq, secs, at) {
    if (!soundOn()) return;
    const t0 = audio.currentTime + (at || 0);
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "square";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, t0);
    gain.gain.exponentialRampToValueAtTime(0.35, t0 + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + secs);
    osc.connect(gain).connect(audio.destination);
    osc.start(t0);
    osc.stop(t0 + secs + 0.02);
  }

  function alarm() {
    beep(988, 0.18, 0);
    beep(740, 0.18, 0.22);
    beep(988, 0.18, 0.44);
  }

  // -------------------------------------------------------------- the queue
  async function api(path, init) {
    const headers = Object.assign({ Authorization: "Bearer " + key }, (init && init.headers) || {});
    const r = await fetch(path, Object.assign({}, init, { headers, cache: "no-store" }));
    const date = Date.parse(r.headers.get("date") || "");
    if (!Number.isNaN(date)) {
      const d = date - Date.now();
      skewMs = Math.abs(d) > 3000 ? d : 0;
    }
    return r;
  }

  class Refused extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || "HTTP " + status);
      this.status = status;
      this.code = problem && problem.code;
    }
  }

  async function problemOf(r) {
    try { return await r.json(); } catch (e) { return null; }
  }

  // The active orders (created, accepted, ready) and the cursor after them.
  async function load() {
    const base = "/api/v1/stores/" + encodeURIComponent(STORE) + "/orders?status=created,accepted,ready&limit=1000";
    const fresh = [];
    let since = null;
    for (;;) {
      const r = await api(base + (since === null ? "" : "&since=" + since));
      if (!r.ok) throw new Refused(r.status, await problemOf(r));
      const page = await r.json();
      fresh.push(...page.orders);
      since = page.cursor;
      if (!page.has_more) break;
    }
    // Finished orders stay as seen; active ones are replaced by the queue.
    const before = new Map(orders);
    for (const [id, o] of orders) if (!isFinal(o.status)) orders.delete(id);
    for (const o of fresh) {
      const had = before.get(o.id);
      if (had) { o._alerted = had._alerted; o._recalled = had._recalled; }
      orders.set(o.id, o);
    }
    lastId = since;
    needLoad = false;
    render();
  }

  function isFinal(s) { return s === "completed" || s === "rejected" || s === "cancelled"; }

  // One feed event: the order as it is now, newer than what is shown, or nothing.
  function apply(kind, data) {
    const o = data && data.order;
    if (!o || typeof o.id !== "string") return;
    const had = orders.get(o.id);
    if (had && had.seq > o.seq) return; // an older copy (resent after a reconnect)
    if (had) {
      o._alerted = had._alerted;
      o._recalled = had._recalled;
    }
    if (kind === "order.unconfirmed_alert") o._alerted = true;
    if (kind.startsWith("order.refund")) details.delete(o.id); // read the refund state again
    orders.set(o.id, o);
    if (o.status === "cancelled" && (!had || had.status !== "cancelled")) {
      const last = (o.history || []).slice(-1)[0];
      notice(canceller(last) + "已取消 " + o.display_no + " 号单" +
        (last && last.reason ? "（" + last.reason + "）" : "") + "：请停止制作");
      alarm();
    }
    if (!had && o.channel === "third_party" && o.status === "created") alarm();
  }

  // Who cancelled, from the history's `kind:id` actor.
  function canceller(change) {
    const by = change && typeof change.by === "string" ? change.by : "";
    const [kind, ...rest] = by.split(":");
    const id = rest.join(":");
    if (kind === "platform") return (PLATFORM[id] || id) + "平台";
    if (kind === "app") return "顾客";
    if (kind === "admin") return "总部";
    if (kind === "terminal") return "门店终端 " + id + " ";
    return "";
  }

  function notice(text) {
    const n = $("notice");
    n.textContent = text;
    n.hidden = false;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => { n.hidden = true; }, 30000);
  }

  // ------------------------------------------------------------- the stream
  function schedule() {
    if (retryTimer !== null) return;
    attempt += 1;
    const delay = Math.min(500 * Math.pow(2, attempt - 1), 5000);
    health("offline", "✕ 未连接，" + Math.ceil(delay / 1000) + " 秒后重连（第 " + attempt + " 次）");
    retryTimer = setTimeout(() => { retryTimer = null; connect(); }, delay);
  }

  async function connect() {
    if (!key) { askKey(""); return; }
    if (controller) controller.abort();
    controller = new AbortController();
    const mineCtl = controller;
    health("connecting", "… 连接中");
    try {
      let r = null;
      for (let tries = 0; ; tries++) {
        if (needLoad) await load();
        const headers = { Accept: "text/event-stream" };
        if (lastId !== null) headers["Last-Event-ID"] = String(lastId);
        r = await api("/api/v1/stores/" + encodeURIComponent(STORE) + "/orders/stream",
          { headers, signal: mineCtl.signal });
        // cursor_expired: what was missed is gone from the feed; the queue
        // itself has it, so reload at once and follow from its cursor.
        if (r.status !== 410) break;
        needLoad = true;
        if (tries > 0) throw new Error("cursor expired twice");
      }
      if (!r.ok || !r.body) throw new Refused(r.status, await problemOf(r));
      attempt = 0;
      lastByte = Date.now();
      health("online", "● 在线");
      await read(r.body.getReader(), mineCtl);
      if (mineCtl === controller) throw new Error("stream ended");
    } catch (e) {
      if (mineCtl !== controller) return; // replaced by a newer connection
      if (e instanceof Refused && (e.status === 401 || e.status === 403 || e.code === "unknown_store")) {
        const why = e.status === 401 ? "密钥无效或已吊销" :
          e.status === 403 ? "这个密钥不属于门店 " + STORE : "没有门店 " + STORE;
        health("offline", "✕ " + why);
        askKey(why + "：" + e.message);
        return;
      }
      schedule();
    }
  }

  async function read(reader, ctl) {
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done || ctl !== controller) return;
      lastByte = Date.now();
      buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let id = null, kind = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (field === "id") id = val;
          else if (field === "event") kind = val;
          else if (field === "data") data += (data ? "\n" : "") + val;
        }
        if (kind === "cursor_expired") {
          // Events were pruned: start again from the queue itself.
          needLoad = true;
          ctl.abort();
          return;
        }
        try {
          if (data) apply(kind, JSON.parse(data));
        } catch (e) {
          console.error("feed event", id, kind, e); // shown as it was; the feed goes on
        }
        if (id !== null && /^\d+$/.test(id)) lastId = id;
        $("last-event").textContent = "最后更新 " + hhmmss(new Date()) + " · #" + lastId;
        render();
      }
    }
  }

  // ---------------------------------------------------------------- actions
  async function act(o, action, reason) {
    try {
      const body = reason ? JSON.stringify({ reason }) : "{}";
      const r = await api("/api/v1/orders/" + encodeURIComponent(o.id) + "/" + action,
        { method: "POST", headers: { "Content-Type": "application/json" }, body });
      if (!r.ok) {
        const p = await problemOf(r);
        toast(o.display_no + " 号单：" + ((p && p.detail) || "HTTP " + r.status), true);
        return;
      }
      apply("order.status_changed", { order: await r.json() });
      render();
    } catch (e) {
      toast("操作没有送达网关，请重试：" + e.message, true);
    }
  }

  let rejecting = null;
  function askReject(o) {
    rejecting = o;
    $("reject-no").textContent = o.display_no + " 号";
    $("reject").hidden = false;
  }
  $("reasons").addEventListener("click", (ev) => {
    const r = ev.target.closest("button");
    if (!r || !rejecting) return;
    $("reject").hidden = true;
    act(rejecting, "reject", r.dataset.reason);
    rejecting = null;
  });
  $("reject-cancel").addEventListener("click", () => { $("reject").hidden = true; rejecting = null; });

  // ---------------------------------------------------------------- drawing
  function ageS(o) {
    const t = Date.parse(o.created_at);
    if (Number.isNaN(t)) return 0;
    return Math.max(0, Math.floor((Date.now() + skewMs - t) / 1000));
  }

  function mmss(s) {
    const m = Math.floor(s / 60), r = s % 60;
    return (m < 100 ? String(m).padStart(2, "0") : String(m)) + ":" + String(r).padStart(2, "0");
  }

  function hhmmss(d) {
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function button(text, cls, on) {
    const b = el("button", cls, text);
    b.type = "button";
    b.addEventListener("click", on);
    return b;
  }

  function channelLabel(o) {
    if (o.channel === "third_party") return PLATFORM[o.platform] || o.platform || CHANNEL.third_party;
    return CHANNEL[o.channel] || o.channel;
  }

  // Cards are built again only when what they show changed, and a column
  // is touched only when its cards did: a tap is never lost to a redraw.
  const cards = new Map(); // id → { sig, el }

  function cardFor(o) {
    const tp = detailsOf(o);
    const sig = [o.seq, o.status, o._recalled ? 1 : 0, o._alerted ? 1 : 0,
      tp ? [tp.day_seq, tp.refund_state, tp.unconfirmed_alert_at].join("/") : ""].join("|");
    const had = cards.get(o.id);
    if (had && had.sig === sig) return had.el;
    const el = card(o, tp);
    cards.set(o.id, { sig, el });
    return el;
  }

  function card(o, tp) {
    const c = el("article", "card ch-" + o.channel + (o.platform ? " pf-" + o.platform.replace(/[^a-z0-9_-]/gi, "") : ""));
    c.dataset.id = o.id;
    c.dataset.status = o.status;
    c.dataset.channel = o.channel;
    if (o.channel_order_id) c.dataset.channelOrderId = o.channel_order_id;
    const head = el("div", "head");
    const seq = tp && Number.isInteger(tp.day_seq) ? " #" + tp.day_seq : "";
    head.append(el("span", "no", String(o.display_no)), el("span", "chan", channelLabel(o) + seq));
    const timer = el("span", "timer", "");
    timer.dataset.created = o.created_at;
    if (!isFinal(o.status)) head.append(timer);
    c.append(head);
    const flags = (o.attention || []).slice();
    // Waiting too long matters only while it still waits.
    if (o.status === "created" && (o._alerted || (tp && tp.unconfirmed_alert_at))) flags.push("unconfirmed");
    if (tp && tp.refund_state === "requested") flags.push("refund_requested");
    if (flags.length) {
      const f = el("div", "flags");
      for (const a of flags) f.append(el("span", "flag", ATTENTION[a] || a));
      c.append(f);
    }
    if (o._recalled) {
      const f = el("div", "flags");
      f.append(el("span", "flag recalled", "已召回"));
      c.append(f);
    }
    const lines = el("ul", "lines");
    for (const l of o.lines || []) lines.append(el("li", "", l.name + " × " + l.quantity));
    c.append(lines);
    const foot = el("div", "foot");
    foot.append(el("span", "total", "¥" + o.total), el("span", "pay", PAYMENT[o.payment_status] || o.payment_status || ""));
    if (o.note) c.append(el("div", "note", "备注：" + o.note));
    c.append(foot);
    const acts = el("div", "acts");
    if (o.status === "created") acts.append(button("接单", "accept", () => act(o, "accept")));
    if (o.status === "accepted") acts.append(button("出餐", "ready", () => act(o, "ready")));
    if (o.status === "ready") acts.append(button("完成", "complete", () => act(o, "complete")));
    if (o.status === "created" || o.status === "accepted") acts.append(button("拒单", "reject", () => askReject(o)));
    if (o.status === "completed" && !o._recalled) acts.append(button("召回", "recall", () => recall(o)));
    if (o._recalled) acts.append(button("收起", "dismiss", () => { o._recalled = false; render(); }));
    if (acts.childNodes.length) c.append(acts);
    return c;
  }

  // A finished order back on screen, next to those waiting for pickup (the
  // state machine has no way back; this is the board's own view).
  function recall(o) {
    o._recalled = true;
    render();
  }

  $("recall").addEventListener("click", () => {
    const done = [...orders.values()].filter((o) => o.status === "completed" && !o._recalled)
      .sort((a, b) => b.seq - a.seq);
    if (done.length) recall(done[0]);
    else toast("这台看板打开后还没有完成的订单", false);
  });

  // A platform order's own daily number and refund state, read once
  // (again after a refund event) from GET /api/v1/orders/{id}/third_party.
  async function fetchDetails(o) {
    details.set(o.id, "pending");
    try {
      const r = await api("/api/v1/orders/" + encodeURIComponent(o.id) + "/third_party");
      if (!r.ok) { details.delete(o.id); return; }
      details.set(o.id, await r.json());
      render();
    } catch (e) {
      details.delete(o.id); // tried again at the next render
    }
  }

  function detailsOf(o) {
    if (o.channel !== "third_party") return null;
    const d = details.get(o.id);
    if (d === undefined && !isFinal(o.status)) fetchDetails(o);
    return d && d !== "pending" ? d : null;
  }

  function render() {
    const cols = {};
    for (const s of Object.keys(STATUS)) cols[s] = [];
    for (const o of orders.values()) {
      if (o._recalled && o.status === "completed") cols.ready.push(o);
      else if (cols[o.status]) cols[o.status].push(o);
    }
    for (const [s, list] of Object.entries(cols)) {
      // Active: oldest first (who waits longest is on top); finished: newest first.
      list.sort(isFinal(s) ? (a, b) => b.seq - a.seq : (a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
      const shown = isFinal(s) ? list.slice(0, KEEP_FINAL) : list;
      if (isFinal(s)) {
        for (const o of list.slice(KEEP_FINAL)) if (!o._recalled) { orders.delete(o.id); details.delete(o.id); }
      }
      const box = $("col-" + s);
      const els = shown.map(cardFor);
      const now = [...box.children];
      if (els.length !== now.length || els.some((e, i) => e !== now[i])) box.replaceChildren(...els);
      box.parentElement.querySelector(".count").textContent = list.length ? "(" + shown.length + ")" : "";
    }
    for (const id of cards.keys()) if (!orders.has(id)) cards.delete(id);
    timers();
  }

  function waiting() {
    return [...orders.values()].filter((o) => o.channel === "third_party" && o.status === "created");
  }

  // Once a second: timers and their colours, the clock, the alert.
  function timers() {
    for (const t of document.querySelectorAll(".timer")) {
      const s = ageS({ created_at: t.dataset.created });
      t.textContent = mmss(s);
      const c = t.closest(".card");
      c.classList.toggle("age-warn", s >= WARN_S && s < LATE_S);
      c.classList.toggle("age-late", s >= LATE_S);
    }
    const w = waiting();
    const a = $("alert");
    a.hidden = w.length === 0;
    if (w.length) {
      const isLate = (o) => o._alerted || Boolean((detailsOf(o) || {}).unconfirmed_alert_at);
      const nos = (list) => list.map((o) => o.display_no + " 号").join("、");
      const late = w.filter(isLate), fresh = w.filter((o) => !isLate(o));
      const parts = [];
      if (late.length) parts.push("超时未接单！" + nos(late));
      if (fresh.length) parts.push("新外卖订单待接单：" + nos(fresh));
      $("alert-text").textContent = parts.join("　·　");
    }
    document.body.classList.toggle("alarm", w.length > 0);
  }

  setInterval(() => {
    tick += 1;
    $("clock").textContent = hhmmss(new Date(Date.now() + skewMs));
    timers();
    if (waiting().length && tick % 3 === 0) alarm();
    if (!soundOn()) showSound();
    if ($("conn").dataset.state === "online" && Date.now() - lastByte > STALE_MS && controller) {
      controller.abort(); // a dead connection nobody closed
      controller = null;
      schedule();
    }
  }, 1000);

  // -------------------------------------------------------------------- key
  function askKey(msg) {
    $("login-msg").textContent = msg;
    $("login").hidden = false;
    $("key").value = "";
    $("key").focus();
  }

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const k = $("key").value.trim();
    if (!k) return;
    key = k;
    localStorage.setItem(KEY_SLOT, k);
    $("login").hidden = true;
    needLoad = true;
    enableSound(); // the tap that submits also unlocks sound
    connect();
  });

  $("change-key").addEventListener("click", () => {
    if (controller) controller.abort();
    controller = null;
    localStorage.removeItem(KEY_SLOT);
    key = "";
    askKey("");
  });

  // The device's own network back (Wi-Fi, cable): retry now, not at the next backoff step.
  window.addEventListener("online", () => {
    if ($("conn").dataset.state === "online" || !key) return;
    if (retryTimer !== null) clearTimeout(retryTimer);
    retryTimer = null;
    connect(); // replaces an attempt still under way
  });

  $("sound").addEventListener("click", enableSound);
  // Any tap on the board unlocks sound too.
  document.addEventListener("pointerdown", () => { if (!soundOn()) enableSound(); }, { once: false, passive: true });

  showSound();
  connect();
})();
