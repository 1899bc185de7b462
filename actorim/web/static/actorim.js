// actorim browser client: one WebSocket at /ws speaking the JSON form of the actorim protocol.
//
// The decisions (back-off, circuit breaker, heartbeat, duplicate detection) live in small pure
// classes with no timers and no clock of their own, exported so that they can be tested by
// feeding them events. `ActorimClient` is the shell that owns the socket and the timers.
//
//   import { ActorimClient } from "/static/actorim.js";
//   const client = new ActorimClient("wss://chat.example/ws", {
//     token: async () => (await (await fetch("/token")).json()).token,
//   });
//   client.on("msg", (m) => console.log(m.from, m.body));
//   client.on("state", ({ state }) => console.log(state));
//   await client.connect();
//   await client.join("lobby");
//   await client.send({ room: "lobby", body: "hello" });
//
// Times are milliseconds throughout.

/** Link states, in `client.state` and in `state` events. */
export const State = Object.freeze({
  CONNECTING: "CONNECTING",
  CONNECTED: "CONNECTED",
  DISCONNECTED: "DISCONNECTED",
  CIRCUIT_OPEN: "CIRCUIT_OPEN",
});

/** Close codes the server uses (docs/protocol.md). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY: 1008,
  INTERNAL: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  TOKEN_EXPIRED: 4001,
  TOKEN_REVOKED: 4003,
  REPLACED: 4009,
});

// The longest restart hint the client honours (ms); a longer one is clamped to it.
export const MAX_RESTART_DELAY = 60_000;

/** The delay (ms) a server asked for in its close, or 0 when the close carries no such hint:
 * a draining server's 1012 ("service restart; reconnect in <ms> ms") or a busy server's 1013,
 * sent at once after the upgrade ("try again later; reconnect in <ms> ms"): docs/protocol.md. */
export function restartDelay(code, reason) {
  if (code !== CloseCode.SERVICE_RESTART && code !== CloseCode.TRY_AGAIN_LATER) return 0;
  const found = /reconnect in (\d{1,9}) ms/.exec(reason || "");
  return found ? Math.min(MAX_RESTART_DELAY, Number(found[1])) : 0;
}

/** Defaults of the client's options; each can be given to the constructor. */
export const DEFAULTS = Object.freeze({
  // A dead server (or a dead network path) is noticed within this time: the client sends the
  // `ping` command when the link has been quiet for a quarter of it.
  heartbeat: 30_000,
  // Reconnect delays: floor + random(0, min(cap, floor * 2 ** attempt)).
  backoff: Object.freeze({ floor: 500, cap: 30_000 }),
  // Consecutive failed attempts before the circuit opens, and how long it stays open.
  maxFailures: 10,
  cooldown: 60_000,
  // After the server closes with 1001 (going away: it drains for a restart) or 1012, failed
  // attempts within this time do not count toward `maxFailures`: a drain (5 s by default) and a
  // restart fit, and the client is back as soon as the server is.
  restartGrace: 30_000,
  // A connection that drops sooner than this after `connect` succeeded counts as a failure, so
  // a server that accepts and at once closes is retried with growing delays, not in a loop.
  stableAfter: 5_000,
  // How long a command waits for its reply before it fails with `timeout`.
  requestTimeout: 15_000,
  // Message ids remembered to drop duplicates (replays after a reconnect, redelivered direct
  // messages): enough for the messages of a long session, a few hundred KiB at most.
  dedupCapacity: 10_000,
  // Sends and receipts waiting for the link before `send` fails with `queue_full`.
  maxQueued: 1_000,
  // Acknowledge every direct message addressed to this user as it arrives.
  autoAck: true,
});

// Messages per `history` page when filling a gap the server could not replay: twelve of the
// largest (a 64 KiB body each) make a reply of about 800 KiB, far under the server's 4 MiB outbox.
const GAP_PAGE = 12;
// Pauses before asking again for a gap's page the server refused for now (rate_limited,
// overloaded): the rate limit refills a page's worth in about a second.
const GAP_RETRY = { floor: 250, cap: 2_000 };

// Retries of a send the server answered `overloaded`, `internal` or `rate_limited`.
const MAX_SEND_RETRIES = 5;
// Error codes after which a send or receipt is worth sending again, with the same `cid`.
const RETRYABLE = new Set(["overloaded", "internal", "rate_limited", "timeout"]);

/** A failed command: `code` is the server's error code, or one of the client's own
 * (`disconnected`, `timeout`, `closed`, `queue_full`). */
export class ActorimError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "ActorimError";
    this.code = code;
  }
}

// -- pure decisions -------------------------------------------------------------------------------

/** The arguments that were given (not undefined). */
function given(args) {
  return Object.fromEntries(Object.entries(args).filter(([, value]) => value !== undefined));
}

/** The delay before reconnect attempt `attempt` (0 for the first): full jitter above a floor. */
export function backoffDelay(attempt, { floor, cap }, random = Math.random) {
  const spread = Math.min(cap, floor * 2 ** Math.max(0, attempt));
  return floor + random() * spread;
}

/**
 * When to try again after a link ended, and whether the circuit is open.
 *
 * Fed with what happened (`connected`, `lost`, `failed`) and the time it happened; answers
 * `{state, delay}`: the state to show and how long to wait before the next attempt. After
 * `maxFailures` consecutive failures the circuit opens for `cooldown`; the attempt after the
 * cool-down is a trial, and if it fails too the circuit opens again at once. A link lost with
 * `goingAway` (the server announced a restart) starts `restartGrace`: failures within it are
 * retried on the back-off schedule without counting toward `maxFailures`.
 */
export class ReconnectPolicy {
  constructor(options = {}, random = Math.random) {
    this.floor = options.backoff?.floor ?? DEFAULTS.backoff.floor;
    this.cap = options.backoff?.cap ?? DEFAULTS.backoff.cap;
    this.maxFailures = options.maxFailures ?? DEFAULTS.maxFailures;
    this.cooldown = options.cooldown ?? DEFAULTS.cooldown;
    this.stableAfter = options.stableAfter ?? DEFAULTS.stableAfter;
    this.restartGrace = options.restartGrace ?? DEFAULTS.restartGrace;
    this.random = random;
    this.failures = 0;
    this.excused = 0; // failures within the restart grace: they do not open the circuit
    this.patientUntil = null;
    this.connectedAt = null;
  }

  /** The server accepted `connect` at `now`. */
  connected(now) {
    this.connectedAt = now;
  }

  /** An established link ended at `now` (a restart, a network change), or an attempt was sent
   * away with a hint (1013); `goingAway`: the server said it is going away (close 1001 or
   * 1012) or when to come back; `after`: the delay (ms) its close hinted, waited before the
   * back-off's own jitter (the grace starts when it ends). */
  lost(now, goingAway = false, after = 0) {
    const stable = this.connectedAt !== null && now - this.connectedAt >= this.stableAfter;
    const wait = goingAway ? Math.max(0, after) : 0;
    this.connectedAt = null;
    if (goingAway && this.restartGrace > 0) this.patientUntil = now + wait + this.restartGrace;
    let next;
    if (stable) {
      this.failures = 0;
      this.excused = 0;
      next = { state: State.DISCONNECTED, delay: this._delay(0) };
    } else {
      next = this.failed(now);
    }
    if (next.state === State.DISCONNECTED) next.delay += wait;
    return next;
  }

  /** An attempt failed at `now` (no socket, no token, connect refused or closed by policy). */
  failed(now) {
    this.connectedAt = null;
    this.failures += 1;
    if (this.patientUntil !== null && now < this.patientUntil) this.excused += 1;
    if (this.failures - this.excused >= this.maxFailures) {
      this.patientUntil = null;
      return { state: State.CIRCUIT_OPEN, delay: this.cooldown };
    }
    return { state: State.DISCONNECTED, delay: this._delay(this.failures) };
  }

  _delay(attempt) {
    return backoffDelay(attempt, { floor: this.floor, cap: this.cap }, this.random);
  }
}

/**
 * Notices a dead link within `window`: fed the time of every frame received and of every
 * timer tick, it answers what to do now: `"ping"` (the link has been quiet for a quarter of the
 * window; ask the server), `"dead"` (that ping has gone unanswered for half the window) or
 * `null`.
 *
 * Tick it every `tickEvery` ms: a dead link is then declared at most `window` after its last
 * frame. Only an unanswered ping declares a link dead, so a tick that comes late (browsers
 * throttle the timers of background tabs) pings first instead of dropping a healthy link.
 */
export class HeartbeatMonitor {
  constructor(window) {
    this.window = window;
    this.lastFrame = 0;
    this.pingedAt = null;
  }

  get tickEvery() {
    return this.window / 8;
  }

  /** A frame arrived (or the link was opened) at `now`. */
  heard(now) {
    this.lastFrame = now;
    this.pingedAt = null;
  }

  tick(now) {
    if (this.pingedAt !== null) return now - this.pingedAt >= this.window / 2 ? "dead" : null;
    if (now - this.lastFrame >= this.window / 4) {
      this.pingedAt = now;
      return "ping";
    }
    return null;
  }
}

/** The last `capacity` ids seen: `add` says whether an id is new, forgetting the oldest. */
export class RecentIds {
  constructor(capacity = DEFAULTS.dedupCapacity) {
    this.capacity = capacity;
    this._ids = new Set();
  }

  get size() {
    return this._ids.size;
  }

  has(id) {
    return this._ids.has(id);
  }

  /** Remember `id`; false if it was seen already. */
  add(id) {
    if (this._ids.has(id)) return false;
    this._ids.add(id);
    if (this._ids.size > this.capacity) {
      // A Set iterates in insertion order: the first id is the oldest.
      this._ids.delete(this._ids.values().next().value);
    }
    return true;
  }
}

/**
 * Who is typing where, from `typing` events: each indicator lasts its `ttl_ms` after the last
 * one heard, and a message from its user ends it (`stopped`). Keyed by whatever names a
 * conversation for the application (the chat page: `room:NAME` or `dm:USER`). No clock of its
 * own: `now` is an argument.
 */
export class TypingTracker {
  constructor() {
    this._until = new Map(); // conversation -> Map(user -> when the indicator ends)
  }

  /** `user` is typing in `conv` for `ttlMs` from `now`. */
  heard(conv, user, ttlMs, now) {
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) return;
    let users = this._until.get(conv);
    if (!users) {
      users = new Map();
      this._until.set(conv, users);
    }
    users.set(user, now + ttlMs);
  }

  /** `user` stopped typing in `conv` (their message arrived). */
  stopped(conv, user) {
    const users = this._until.get(conv);
    if (!users) return;
    users.delete(user);
    if (!users.size) this._until.delete(conv);
  }

  /** The users typing in `conv` at `now`, sorted; expired indicators are forgotten. */
  typing(conv, now) {
    const users = this._until.get(conv);
    if (!users) return [];
    for (const [user, until] of users) if (until <= now) users.delete(user);
    if (!users.size) this._until.delete(conv);
    return [...users.keys()].sort();
  }

  /** Milliseconds from `now` until the next indicator ends, or null if none is left (the
   * ended ones are forgotten). */
  nextExpiry(now) {
    let next = null;
    for (const [conv, users] of this._until) {
      for (const [user, until] of users) {
        if (until <= now) users.delete(user);
        else if (next === null || until < next) next = until;
      }
      if (!users.size) this._until.delete(conv);
    }
    return next === null ? null : next - now;
  }
}

// -- frames ---------------------------------------------------------------------------------------

function bytesToBase64(bytes) {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

function base64ToBytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** One outgoing frame as JSON text; bytes (Uint8Array, ArrayBuffer) go as {"$bytes": base64}. */
export function encodeFrame(obj) {
  return JSON.stringify(obj, (_key, value) => {
    if (value instanceof ArrayBuffer) return { $bytes: bytesToBase64(new Uint8Array(value)) };
    if (ArrayBuffer.isView(value)) {
      return {
        $bytes: bytesToBase64(new Uint8Array(value.buffer, value.byteOffset, value.byteLength)),
      };
    }
    return value;
  });
}

/** One incoming JSON frame; {"$bytes": base64} becomes a Uint8Array. */
export function decodeFrame(text) {
  return JSON.parse(text, (_key, value) => {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      const keys = Object.keys(value);
      if (keys.length === 1 && keys[0] === "$bytes" && typeof value.$bytes === "string") {
        return base64ToBytes(value.$bytes);
      }
    }
    return value;
  });
}

/** A fresh client message id: a UUID, also where `crypto.randomUUID` is missing (plain http). */
export function newCid() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const part = (from, to) => hex.slice(from, to);
  return `${part(0, 8)}-${part(8, 12)}-${part(12, 16)}-${part(16, 20)}-${part(20)}`;
}

/** `args` of a `history` or `thread` command with the cursors and limit given. */
function paged(args, { before, after, limit }) {
  if (before !== undefined) args.before = before;
  if (after !== undefined) args.after = after;
  if (limit !== undefined) args.limit = limit;
  return args;
}

function withTimeout(promise, ms) {
  let timer;
  const late = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new ActorimError("timeout", `no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

// -- the client -----------------------------------------------------------------------------------

/**
 * A connection to an actorim server that survives server restarts and network loss.
 *
 * Events (`on(type, callback)` passes the event's detail; `addEventListener` gets a
 * CustomEvent): `msg`, `edit`, `delete`, `member`, `moderation`, `presence`, `receipt`, `marker`, `typing` (server
 * events as documented in docs/protocol.md), `state` ({state, previous, delay?, code?, reason?}), `joined` (the join
 * reply {room, seq, epoch, members} with `resumed`: a re-join after a reconnect, `recovered`:
 * false when the missed messages could not be replayed (the client then fetches them with
 * `history` itself and they arrive as `msg` events; only a gap older than the server's
 * retention stays missing), and `epochChanged`: the room's numbering restarted, nothing can be
 * fetched), `refresh` ({exp, grace}: the token expires soon; with a `token` function the client
 * fetches a fresh one and sends `refresh` itself), `left` ({room, reason}: a refreshed token no
 * longer allows the room; the client forgot it), `gap` ({room, after, seq}: the room skipped
 * messages it could not send at once; the
 * client fetches them with `history` itself and they arrive as `msg` events), `error`
 * ({code, message}).
 *
 * Every message reaches the application once as a `msg` event, the user's own sends included
 * (built from the send's reply): duplicates by `mid` are dropped. Every change reaches it once
 * as an `edit` or `delete` event, the user's own included (built from the reply).
 */
export class ActorimClient extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this._token = options.token;
    this._policy = new ReconnectPolicy(this.options, options.random ?? Math.random);
    this._heartbeat = new HeartbeatMonitor(this.options.heartbeat);
    this._seen = new RecentIds(this.options.dedupCapacity);

    this.state = State.DISCONNECTED;
    this.user = null;
    this.session = null;

    this._ws = null;
    this._gen = 0; // bumped for every attempt: callbacks of an older socket are ignored
    this._live = false; // the server accepted connect on the current socket
    this._ready = false; // ... and rooms, watches and queued sends are restored
    this._stopped = true;
    this._finalError = null; // why the server stopped the client for good, for the calls after
    this._retryTimer = null;
    this._heartbeatTimer = null;
    this._nextId = 1;
    this._inflight = new Map(); // command id -> {resolve, reject, timer, entry?}
    this._queue = []; // sends and receipts not yet answered, in order
    this._rooms = new Map(); // room -> {seq, epoch, joinedGen, waiters}
    this._watching = new Set();
    this._readyWaiters = [];
    this._onOnline = () => {
      if (this.state === State.DISCONNECTED && this._retryTimer !== null) this._attemptNow();
    };
  }

  // -- events -------------------------------------------------------------------------------------

  /** Call `callback(detail)` for every event of `type`; returns a function that unsubscribes. */
  on(type, callback) {
    const listener = (event) => callback(event.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state, extra = {}) {
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous, ...extra });
  }

  // -- life cycle ---------------------------------------------------------------------------------

  /** Start connecting (and keep reconnecting); resolves once connected, rejects on `close()`,
   * when a fixed token is refused (`unauthenticated`), or when the user already holds too many
   * connections (`forbidden`). */
  connect() {
    const ready = new Promise((resolve, reject) => {
      if (this._ready) resolve(this._connectInfo);
      else this._readyWaiters.push({ resolve, reject });
    });
    if (this._stopped) {
      this._stopped = false;
      this._finalError = null;
      globalThis.addEventListener?.("online", this._onOnline);
      this._attemptNow();
    } else if (this.state === State.DISCONNECTED || this.state === State.CIRCUIT_OPEN) {
      this._attemptNow();
    }
    return ready;
  }

  /** Close for good: pending sends and commands fail with `closed`. */
  close() {
    this._stopped = true;
    this._finalError = null;
    this._gen += 1;
    globalThis.removeEventListener?.("online", this._onOnline);
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const ws = this._ws;
    this._dropSocket();
    if (ws) ws.close(CloseCode.NORMAL);
    const closed = new ActorimError("closed", "the client was closed");
    for (const entry of this._queue.splice(0)) entry.reject(closed);
    for (const room of this._rooms.values()) for (const w of room.waiters.splice(0)) w.reject(closed);
    for (const w of this._readyWaiters.splice(0)) w.reject(closed);
    if (this.state !== State.DISCONNECTED) this._setState(State.DISCONNECTED, { final: true });
  }

  _attemptNow() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._attempt();
  }

  async _attempt() {
    const stale = this._ws;
    if (stale) {
      this._dropSocket();
      stale.close();
    }
    const gen = ++this._gen;
    this._setState(State.CONNECTING);
    let token = this._token;
    try {
      if (typeof token === "function") {
        token = await withTimeout(token(), this.options.requestTimeout);
      }
    } catch (err) {
      if (gen === this._gen && !this._stopped) {
        this._ended(gen, 0, `no token: ${err.message || err}`);
      }
      return;
    }
    if (gen !== this._gen || this._stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._ended(gen, 0, `${err.message || err}`);
      return;
    }
    this._ws = ws;
    this._heartbeat.heard(Date.now());
    this._heartbeatTimer = setInterval(() => this._tick(gen), this._heartbeat.tickEvery);
    ws.onopen = () => this._opened(gen, token);
    ws.onmessage = (event) => this._received(gen, event.data);
    ws.onclose = (event) => this._ended(gen, event.code, event.reason);
    ws.onerror = () => {}; // a close event follows, with the code
  }

  async _opened(gen, token) {
    let info;
    try {
      info = await this._call("connect", { token, ...this._resumeArgs() }, { internal: true });
    } catch (err) {
      if (gen === this._gen && err.code !== "disconnected") {
        this._emit("error", { code: err.code, message: err.message });
        const refused = err.code === "unauthenticated" || err.code === "forbidden";
        this._abandon(gen, refused ? CloseCode.POLICY : CloseCode.ABNORMAL, err.message, err.code);
      }
      return;
    }
    if (gen !== this._gen) return;
    this._live = true;
    this.user = info.user;
    this.session = info.session;
    this._connectInfo = info;
    this._inbox(info, gen);
    this._policy.connected(Date.now());
    try {
      await this._restore(gen);
    } catch (err) {
      if (gen === this._gen && err.code !== "disconnected") {
        this._abandon(gen, CloseCode.ABNORMAL, `restoring the session failed: ${err.message}`);
      }
      return;
    }
    if (gen !== this._gen) return;
    if (this._watching.size) {
      this._call("watch", { users: [...this._watching] }, { internal: true }).catch(() => {});
    }
    this._ready = true;
    this._setState(State.CONNECTED, { user: info.user, session: info.session });
    for (const w of this._readyWaiters.splice(0)) w.resolve(info);
    this._joinRooms(gen);
    this._flush();
  }

  /** What `connect` carries so that the server resumes the rooms this client knows from the
   * last seq seen in each (`since`, with the store's `epoch`). */
  _resumeArgs() {
    const since = {};
    const epochs = new Set();
    for (const [room, entry] of this._rooms) {
      if (entry.seq !== null && entry.joinedGen !== null) since[room] = entry.seq;
      if (entry.epoch !== null) epochs.add(entry.epoch);
    }
    this._resumed = since;
    this._resumeEpoch = epochs.size === 1 ? [...epochs][0] : null;
    if (!Object.keys(since).length || this._resumeEpoch === null) return {};
    return { since, epoch: this._resumeEpoch };
  }

  /** The `connect` reply's inbox: the server subscribed this socket to the user's rooms, each
   * from the seq `connect` named for it (in the same epoch) or else from its latest. A room the
   * client did not know is joined from now on, without a `join`. */
  _inbox(info, gen) {
    this.conversations = Array.isArray(info.conversations) ? info.conversations : [];
    const resumed = info.epoch === this._resumeEpoch ? this._resumed || {} : {};
    for (const entry of this.conversations) {
      if (typeof entry.room !== "string" || !Number.isInteger(entry.seq)) continue;
      const room = this._rooms.get(entry.room);
      if (!room) {
        const epoch = info.epoch ?? null;
        this._rooms.set(entry.room, { seq: entry.seq, epoch, joinedGen: gen, waiters: [] });
      } else if (entry.room in resumed) {
        // Resumed by connect: its re-join (with the same since) says whether it recovered; a
        // gap announced meanwhile is filled after that reply, not twice.
        room.rejoining = true;
      }
    }
    this._emit("conversations", {
      conversations: this.conversations,
      more: !!info.conversations_more,
      cursor: info.conversations_cursor,
    });
  }

  /** Re-join every room (with `since` and `epoch` when messages were seen) before anything else,
   * but those the server subscribed this socket to with nothing missed. */
  async _restore(gen) {
    const joins = [];
    for (const [room, entry] of this._rooms) {
      if (entry.joinedGen !== gen) joins.push(this._joinOne(room, gen));
    }
    await Promise.all(joins);
  }

  /** A `member` event about this user: they joined or left a room on another device, and this
   * socket receives it now, or no longer does. */
  _member(frame) {
    if (frame.user === this.user && typeof frame.room === "string") {
      if (frame.state === "joined" && !this._rooms.has(frame.room)) {
        this._rooms.set(frame.room, { seq: null, epoch: null, joinedGen: this._gen, waiters: [] });
      } else if (frame.state === "left") {
        this._rooms.delete(frame.room);
      }
    }
    this._emit("member", frame);
  }

  _joinRooms(gen) {
    for (const [room, entry] of this._rooms) {
      if (entry.joinedGen !== gen) this._joinOne(room, gen).catch(() => {});
    }
  }

  async _joinOne(room, gen) {
    const entry = this._rooms.get(room);
    // Resume from the last message seen only on a new link; joining again on the same link
    // replays nothing (the server keeps the membership).
    const resuming = entry.seq !== null && entry.joinedGen !== gen;
    entry.joinedGen = gen;
    const args = { room };
    if (resuming) {
      args.since = entry.seq;
      if (entry.epoch !== null) args.epoch = entry.epoch;
    }
    let reply;
    try {
      reply = await this._call("join", args, { internal: true });
      entry.rejoining = false;
    } catch (err) {
      entry.rejoining = false;
      if (err.code === "disconnected" || err.code === "timeout") throw err;
      if (this._rooms.get(room) === entry) this._rooms.delete(room);
      for (const w of entry.waiters.splice(0)) w.reject(err);
      this._emit("error", { code: err.code, message: `joining ${room}: ${err.message}`, room });
      return null;
    }
    if (this._rooms.get(room) !== entry) {
      // Left while the join was on its way: leave on the server too.
      this._call("leave", { room }, { internal: true }).catch(() => {});
      return reply;
    }
    const epochChanged = entry.epoch !== null && entry.epoch !== reply.epoch;
    entry.epoch = reply.epoch;
    if (entry.seq === null || reply.recovered === false) entry.seq = reply.seq;
    const recovered = reply.recovered !== false;
    this._emit("joined", { ...reply, resumed: resuming, recovered, epochChanged });
    for (const w of entry.waiters.splice(0)) w.resolve(reply);
    if (resuming && !recovered && !epochChanged && reply.seq > args.since) {
      // Too much was missed to replay at once: the server sent nothing and said where the
      // room is now. Fetch the gap a page at a time instead.
      this._fillGap(room, args.since, reply.seq);
    }
    return reply;
  }

  /** Page `history` over a gap a re-join could not replay, or one the room skipped
   * (`since` < seq <= `through`): each missed message reaches the application as a `msg`
   * event, once. A lost link pauses the paging until the client is connected again; `close()`
   * ends it. */
  async _fillGap(room, since, through) {
    let after = since;
    let refusals = 0;
    while (after < through && this._rooms.has(room)) {
      let page;
      try {
        page = await this.history({ room, after, before: through + 1, limit: GAP_PAGE });
      } catch (err) {
        if (RETRYABLE.has(err.code) && err.code !== "timeout") {
          // Pages are charged by their size: a large gap runs into the rate limit, and a busy
          // store answers overloaded. Both pass; ask again after a pause.
          refusals += 1;
          await new Promise((resolve) => setTimeout(resolve, backoffDelay(refusals, GAP_RETRY)));
          continue;
        }
        if (err.code !== "disconnected" && err.code !== "timeout") {
          const message = `filling the gap in ${room}: ${err.message}`;
          this._emit("error", { code: err.code, message, room });
          return;
        }
        try {
          await new Promise((resolve, reject) => {
            if (this._ready) resolve();
            else this._readyWaiters.push({ resolve, reject });
          });
        } catch {
          return; // closed
        }
        continue;
      }
      refusals = 0;
      for (const msg of page.messages) this._message(msg);
      if (!page.more || page.messages.length === 0) return;
      after = page.messages[page.messages.length - 1].seq;
    }
  }

  _tick(gen) {
    if (gen !== this._gen) return;
    const action = this._heartbeat.tick(Date.now());
    if (action === "dead") {
      this._abandon(gen, CloseCode.ABNORMAL, "no answer from the server");
    } else if (action === "ping" && this._live) {
      this._call("ping", {}, { internal: true }).catch(() => {});
    }
  }

  /** Give up on the current socket now, without waiting for the browser's close event;
   * `refusal`: the error code of a refused `connect`. */
  _abandon(gen, code, reason, refusal = null) {
    const ws = this._ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close();
      } catch {
        // already closing
      }
    }
    this._ended(gen, code, reason, refusal);
  }

  _dropSocket() {
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
    if (this._ws) this._ws.onopen = this._ws.onmessage = this._ws.onclose = null;
    this._ws = null;
    this._live = false;
    this._ready = false;
    const gone = new ActorimError("disconnected", "the connection to the server was lost");
    for (const [id, pending] of this._inflight) {
      clearTimeout(pending.timer);
      this._inflight.delete(id);
      if (pending.entry) pending.entry.sentGen = null;
      else pending.reject(gone);
    }
  }

  _ended(gen, code, reason, refusal = null) {
    if (gen !== this._gen || this._stopped) return;
    const wasLive = this._live;
    this._dropSocket();
    this._gen += 1;
    // `forbidden`: an older server refusing a user past max_connections_per_user; trying again
    // cannot help until the application closes one. 4009: a newer connection of the user
    // replaced this one (this server's answer past the limit); coming back would replace
    // another in turn.
    const tooMany = refusal === "forbidden" || code === CloseCode.REPLACED;
    // 4001 and 4003: the token expired or was revoked; only a token function gives a new one.
    const spent = code === CloseCode.TOKEN_EXPIRED || code === CloseCode.TOKEN_REVOKED;
    const refused = code === CloseCode.POLICY || spent;
    if (tooMany || (refused && typeof this._token !== "function")) {
      // The same token would be refused again: only the application can get a new one.
      this._stopped = true;
      const err = tooMany
        ? new ActorimError(code === CloseCode.REPLACED ? "replaced" : "forbidden", reason)
        : new ActorimError("unauthenticated", reason || "the server refused the token");
      this._finalError = err;
      for (const w of this._readyWaiters.splice(0)) w.reject(err);
      this._setState(State.DISCONNECTED, { code, reason, final: true });
      return;
    }
    const now = Date.now();
    const after = restartDelay(code, reason);
    // A hint (1012 draining, or 1013 from a server too busy to set this attempt up) is waited
    // out like a restart's: its failures do not open the circuit within the restart grace.
    const goingAway =
      code === CloseCode.GOING_AWAY || code === CloseCode.SERVICE_RESTART || after > 0;
    const orderly = goingAway || spent || code === CloseCode.ABNORMAL;
    const next =
      (wasLive && orderly) || after > 0
        ? this._policy.lost(now, goingAway, after)
        : this._policy.failed(now);
    this._setState(next.state, { delay: next.delay, code, reason });
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._attempt();
    }, next.delay);
  }

  // -- frames -------------------------------------------------------------------------------------

  _received(gen, data) {
    if (gen !== this._gen) return;
    this._heartbeat.heard(Date.now());
    if (typeof data !== "string") return; // a JSON connection gets text frames only
    let frame;
    try {
      frame = decodeFrame(data);
    } catch {
      return;
    }
    switch (frame.t) {
      case "reply":
        return this._reply(frame);
      case "msg":
        return this._message(frame);
      case "edit":
      case "delete":
      case "reaction":
        return this._change(frame);
      case "gap":
        return this._gap(frame);
      case "member":
        return this._member(frame);
      case "room":
      case "moderation":
      case "presence":
      case "receipt":
      case "marker":
      case "typing":
        return this._emit(frame.t, frame);
      case "error":
        return this._emit("error", frame.error);
      case "refresh":
        return this._refreshToken(gen, frame);
      case "left":
        return this._left(frame);
      default:
        return undefined;
    }
  }

  /** The server asks for a fresh token before the current one expires (`refresh` event): with a
   * token function, fetch one and hand it over on the same socket; otherwise the server closes
   * the connection 4001 once the token's grace runs out. */
  async _refreshToken(gen, frame) {
    this._emit("refresh", frame);
    if (typeof this._token !== "function") return;
    try {
      const token = await withTimeout(this._token(), this.options.requestTimeout);
      if (gen !== this._gen) return;
      await this._call("refresh", { token }, { internal: true });
    } catch (err) {
      if (gen === this._gen) this._emit("error", { code: err.code, message: err.message });
    }
  }

  /** A refreshed token does not allow a joined room: the server took the client out of it. */
  _left(frame) {
    const entry = this._rooms.get(frame.room);
    this._rooms.delete(frame.room);
    if (entry) {
      const err = new ActorimError("forbidden", frame.reason);
      for (const w of entry.waiters.splice(0)) w.reject(err);
    }
    this._emit("left", frame);
  }

  _reply(frame) {
    const pending = this._inflight.get(frame.id);
    if (!pending) return;
    this._inflight.delete(frame.id);
    clearTimeout(pending.timer);
    if (pending.entry) {
      this._answered(pending.entry, frame);
    } else if (frame.ok) {
      pending.resolve(frame.data);
    } else {
      pending.reject(new ActorimError(frame.error.code, frame.error.message));
    }
  }

  /** The room skipped messages it could not send at once (after `after`, through `seq`): fetch
   * them from `history` as after a re-join that was not recovered. */
  _gap(frame) {
    const entry = this._rooms.get(frame.room);
    if (!entry || !Number.isInteger(frame.after) || !Number.isInteger(frame.seq)) return;
    if (entry.rejoining) return; // resumed by connect: its re-join's reply says what to fill
    if (entry.seq === null || frame.seq > entry.seq) entry.seq = frame.seq;
    this._emit("gap", frame);
    if (frame.seq > frame.after) this._fillGap(frame.room, frame.after, frame.seq);
  }

  _message(msg) {
    if (msg.room !== undefined) {
      const room = this._rooms.get(msg.room);
      if (room && (room.seq === null || msg.seq > room.seq)) room.seq = msg.seq;
    }
    if (msg.from === this.user && msg.cid !== undefined) {
      // Another delivery of one of our own sends (a replay): it answers the send too.
      const entry = this._queue.find((e) => e.cmd.t === "send" && e.cmd.cid === msg.cid);
      if (entry) this._settle(entry, { mid: msg.mid, seq: msg.seq, ts: msg.ts });
    }
    if (this.options.autoAck && msg.to === this.user && msg.from !== this.user) {
      this.ack(msg.mid).catch(() => {});
    }
    if (this._seen.add(msg.mid)) this._emit("msg", msg);
  }

  /** An `edit` or `delete` event: it holds a place in the room's order (the next re-join
   * resumes after it) and reaches the application once, told apart by its own `seq`. */
  _change(event) {
    if (event.room !== undefined) {
      const room = this._rooms.get(event.room);
      if (room && (room.seq === null || event.seq > room.seq)) room.seq = event.seq;
    }
    if (this._seen.add(`${event.t}:${event.mid}:${event.seq}`)) this._emit(event.t, event);
  }

  _send(frame) {
    this._ws.send(encodeFrame(frame));
  }

  /** Send command `t` now; rejects with `disconnected` unless the link is up. */
  _call(t, args, { internal = false } = {}) {
    return new Promise((resolve, reject) => {
      if (!this._ws || this._ws.readyState !== WebSocket.OPEN || (!internal && !this._ready)) {
        // Stopped for good by the server (a refused token, a replaced connection): say why.
        if (this._stopped && this._finalError) {
          reject(this._finalError);
          return;
        }
        const why = "not connected to the server; try again once connected";
        reject(new ActorimError("disconnected", why));
        return;
      }
      const id = this._nextId++;
      const timer = setTimeout(() => {
        this._inflight.delete(id);
        const why = `no reply to ${t} within ${this.options.requestTimeout} ms`;
        reject(new ActorimError("timeout", why));
      }, this.options.requestTimeout);
      this._inflight.set(id, { resolve, reject, timer });
      this._send({ t, id, ...args });
    });
  }

  // -- sends and receipts: kept until the server answers, resent after a reconnect -----------------

  _enqueue(cmd) {
    if (this._queue.length >= this.options.maxQueued) {
      const why = "too many messages waiting for the server; try later";
      return Promise.reject(new ActorimError("queue_full", why));
    }
    return new Promise((resolve, reject) => {
      this._queue.push({ cmd, resolve, reject, sentGen: null, tries: 0, retryTimer: null });
      if (this._ready) this._flush();
    });
  }

  _flush() {
    if (!this._ready) return;
    for (const entry of this._queue) {
      if (entry.sentGen === this._gen || entry.retryTimer !== null) continue;
      const id = this._nextId++;
      entry.sentGen = this._gen;
      const timer = setTimeout(() => {
        this._inflight.delete(id);
        this._answered(entry, { ok: false, error: { code: "timeout", message: "no reply" } });
      }, this.options.requestTimeout);
      this._inflight.set(id, { entry, timer });
      this._send({ ...entry.cmd, id });
    }
  }

  _answered(entry, frame) {
    if (!this._queue.includes(entry)) return;
    if (frame.ok) {
      this._settle(entry, frame.data);
      return;
    }
    const { code, message } = frame.error;
    entry.tries += 1;
    if (RETRYABLE.has(code) && entry.tries <= MAX_SEND_RETRIES) {
      entry.sentGen = null;
      entry.retryTimer = setTimeout(() => {
        entry.retryTimer = null;
        this._flush();
      }, backoffDelay(entry.tries, this.options.backoff));
      return;
    }
    this._queue.splice(this._queue.indexOf(entry), 1);
    entry.reject(new ActorimError(code, message));
  }

  _settle(entry, data) {
    const index = this._queue.indexOf(entry);
    if (index < 0) return;
    this._queue.splice(index, 1);
    clearTimeout(entry.retryTimer);
    const cmd = entry.cmd;
    if (cmd.t === "send") {
      const msg = { t: "msg", mid: data.mid, seq: data.seq };
      if (cmd.room !== undefined) msg.room = cmd.room;
      else msg.to = cmd.to;
      msg.from = this.user;
      Object.assign(msg, { kind: cmd.kind, body: cmd.body, ts: data.ts, cid: cmd.cid });
      if (data.thread !== undefined) {
        Object.assign(msg, { reply_to: cmd.reply_to, thread: data.thread });
      }
      if (this._seen.add(msg.mid)) this._emit("msg", msg);
    } else if (cmd.t === "edit" || cmd.t === "delete") {
      // The page's own change, as its members get it: the page draws from one handler.
      const event = { t: cmd.t, mid: data.mid, seq: data.seq };
      if (data.room !== undefined) event.room = data.room;
      else Object.assign(event, { to: data.to, from: data.from });
      event.by = this.user;
      if (cmd.t === "edit") Object.assign(event, { body: cmd.body, edited: data.ts });
      Object.assign(event, { ts: data.ts, cid: cmd.cid });
      if (this._seen.add(`${event.t}:${event.mid}:${event.seq}`)) this._emit(event.t, event);
    } else if (cmd.t === "react" && !data.unchanged) {
      // The page's own reaction, as its members get it; one that changed nothing has no event.
      const event = { t: "reaction", mid: data.mid, seq: data.seq };
      if (data.room !== undefined) event.room = data.room;
      else Object.assign(event, { to: data.to, from: data.from });
      Object.assign(event, { key: cmd.key, user: this.user, on: cmd.on });
      Object.assign(event, { ts: data.ts, cid: cmd.cid });
      if (this._seen.add(`reaction:${event.mid}:${event.seq}`)) this._emit("reaction", event);
    }
    entry.resolve(data);
  }

  // -- commands -----------------------------------------------------------------------------------

  /**
   * Send `body` to a room (joined first) or to a user. Resolves with `{mid, seq, ts}` once the
   * server stored it; while the link is down the message waits and is resent with the same
   * `cid`, so it is stored once however often it is sent. `reply_to` (a message of the same
   * conversation) makes it a reply in that message's thread: the answer and the page's own
   * `msg` event then carry `thread`, the thread's root; a message that is not there, or was
   * deleted, rejects with `not_found`. `mentions` names users the message mentions besides the
   * `@user`s of its text.
   */
  send({ room, to, body, kind = "text", cid = newCid(), reply_to: replyTo, mentions }) {
    if ((room === undefined) === (to === undefined)) {
      return Promise.reject(new ActorimError("bad_request", "give exactly one of room and to"));
    }
    const cmd = { t: "send", body, kind, cid };
    if (mentions !== undefined && mentions.length) cmd.mentions = mentions;
    if (room !== undefined) cmd.room = room;
    else cmd.to = to;
    if (replyTo !== undefined) cmd.reply_to = replyTo;
    return this._enqueue(cmd);
  }

  /**
   * Replace the body of this user's message `mid` (within the server's edit window). Resolves
   * with `{mid, seq, ts, room | to, from}` once stored; queued while offline and resent with the
   * same `cid`, like a send. Members, and this page, get an `edit` event.
   */
  edit(mid, body, { cid = newCid() } = {}) {
    return this._enqueue({ t: "edit", mid, body, cid });
  }

  /** Delete this user's message `mid`: its body is erased, a tombstone stays. Like `edit`;
   * members, and this page, get a `delete` event. */
  delete(mid, { cid = newCid() } = {}) {
    return this._enqueue({ t: "delete", mid, cid });
  }

  /**
   * Add (`on`, the default) or remove this user's reaction `key` (an emoji or a short name, at
   * most 32 bytes of UTF-8) on message `mid`. Resolves with `{mid, seq, ts, room | to, from}`
   * once stored, like `edit`; members, and this page, get a `reaction` event. Reacting twice
   * changes nothing: the answer then carries `unchanged: true` and no event comes.
   */
  react(mid, key, { on = true, cid = newCid() } = {}) {
    return this._enqueue({ t: "react", mid, key, on, cid });
  }

  /**
   * Tell a joined `room` or the user `to` that this user is typing; the others get a `typing`
   * event `{room | to, user, ttl_ms}` that lasts `ttl_ms`. Call it again every 2-3 s while the
   * user types (the server relays at most one every 2 s); the user's next message ends it.
   * Needs the link up (an indicator is not worth queueing): rejects with `disconnected`.
   */
  typing({ room, to } = {}) {
    if ((room === undefined) === (to === undefined)) {
      return Promise.reject(new ActorimError("bad_request", "give exactly one of room and to"));
    }
    return this._call("typing", room !== undefined ? { room } : { to });
  }

  /** Tell the sender that direct message `mid` arrived (sent once connected). */
  ack(mid) {
    return this._receipt("ack", mid);
  }

  /**
   * `read(mid)`: tell the sender that direct message `mid` was read (sent once connected).
   * `read({room | with, seq})`: move this user's read marker there up to `seq` (never back);
   * resolves with `{room | with, marker, unread, mentions}` (queued while offline), and the
   * user's other pages and devices get a `marker` event.
   */
  read(what) {
    if (typeof what === "string") return this._receipt("read", what);
    const { room, with: peer, seq } = what;
    if ((room === undefined) === (peer === undefined) || !Number.isInteger(seq)) {
      const why = "give exactly one of room and with, and an integer seq";
      return Promise.reject(new ActorimError("bad_request", why));
    }
    return this._enqueue({ t: "read", ...(room !== undefined ? { room } : { with: peer }), seq });
  }

  /**
   * This user's read marker and counts in `rooms` and the direct conversations `with` those
   * users: `{conversations: [{room | with, seq, marker, unread, mentions}]}` (counts stop at
   * the server's `unread_count_max`, 999: show "999+"); needs the link up.
   */
  unread({ rooms = [], with: peers = [] } = {}) {
    return this._call("unread", { rooms, with: peers });
  }

  _receipt(t, mid) {
    const queued = this._queue.find((e) => e.cmd.t === t && e.cmd.mid === mid);
    if (queued) return queued.promise;
    const promise = this._enqueue({ t, mid });
    const entry = this._queue.find((e) => e.cmd.t === t && e.cmd.mid === mid);
    if (entry) entry.promise = promise;
    return promise;
  }

  /**
   * Join `room`, now or as soon as the link is up; resolves with `{room, seq, epoch, members}`.
   * The client stays in the room across reconnects, catching up on what it missed.
   */
  join(room) {
    let entry = this._rooms.get(room);
    if (!entry) {
      entry = { seq: null, epoch: null, joinedGen: null, waiters: [] };
      this._rooms.set(room, entry);
    }
    const joined = new Promise((resolve, reject) => entry.waiters.push({ resolve, reject }));
    if (this._ready) this._joinOne(room, this._gen).catch(() => {});
    return joined;
  }

  /** Leave `room`; it is no longer re-joined after a reconnect. */
  async leave(room) {
    const entry = this._rooms.get(room);
    this._rooms.delete(room);
    if (entry) {
      const err = new ActorimError("not_found", `left room ${room}`);
      for (const w of entry.waiters.splice(0)) w.reject(err);
    }
    if (!this._ready) return {};
    try {
      return await this._call("leave", { room });
    } catch (err) {
      if (err.code === "not_found" || err.code === "disconnected") return {};
      throw err;
    }
  }

  /** Rooms this client is in (or will re-join). */
  get rooms() {
    return [...this._rooms.keys()];
  }

  /** Get `presence` events for `users`, across reconnects. */
  async watch(users) {
    for (const user of users) this._watching.add(user);
    if (!this._ready) return {};
    return this._call("watch", { users });
  }

  /** Stop the `presence` events of `users`. */
  async unwatch(users) {
    for (const user of users) this._watching.delete(user);
    if (!this._ready) return {};
    return this._call("unwatch", { users });
  }

  /** `{statuses: {user: "online" | "offline"}}`; needs the link up. */
  presence(users) {
    return this._call("presence", { users });
  }

  /** A page of stored messages in ascending `seq`: `{messages, more}`; needs the link up. */
  history({ room, with: peer, before, after, limit } = {}) {
    const args = {};
    if (room !== undefined) args.room = room;
    if (peer !== undefined) args.with = peer;
    return this._call("history", paged(args, { before, after, limit }));
  }

  /**
   * The thread whose root is message `mid`: `{root, messages, more}`, the root's `msg` map (with
   * its `thread` summary once it has replies) and a page of its replies in ascending `seq`,
   * paged like `history`; needs the link up.
   */
  thread(mid, { before, after, limit } = {}) {
    return this._call("thread", paged({ mid }, { before, after, limit }));
  }

  /** A page of the inbox after the cursor `before` (the connect reply's
   * `conversations_cursor`): `{conversations, more, cursor?}`; needs the link up. */
  moreConversations({ before, limit } = {}) {
    return this._call("conversations", given({ before, limit }));
  }

  /** A page of `room`'s members, offline ones included: `{members: [{user, status}], cursor?}`. */
  members(room, { cursor, limit } = {}) {
    return this._call("members", { room, ...given({ cursor, limit }) });
  }

  /** As a moderator or owner of `room` (docs/moderation.md): `action` is `kick`, `ban`,
   * `unban`, `mute` or `unmute` (with `user`), or `delete` (with `mid`, another user's
   * message); `reason` is shown to the user, `seconds` bounds a ban or mute. Resolves with the
   * audit entry; the user's devices get a `moderation` event. */
  moderate(room, action, { user, mid, reason, seconds } = {}) {
    return this._call("moderate", { room, action, ...given({ user, mid, reason, for: seconds }) });
  }

  /** Set `room`'s title and/or topic (a member only): `{room, title, topic}`; every member's
   * devices get a `room` event. */
  updateRoom(room, { title, topic } = {}) {
    return this._call("room.update", { room, ...given({ title, topic }) });
  }

  /** The public rooms whose name or title contains `query` (the `rooms` command; the getter
   * `rooms` lists the joined ones): `{rooms: [{room, title, topic, members}], cursor?}`. */
  directory({ query, cursor, limit } = {}) {
    return this._call("rooms", given({ query, cursor, limit }));
  }

  /** One round trip to the server. */
  ping() {
    return this._call("ping", {});
  }
}
