// The actorim chat page: rooms, direct messages, presence and receipts over ActorimClient.

import { ActorimClient, CloseCode, State, TypingTracker, newCid } from "./actorim.js";
import {
  claimsOf,
  expired,
  fetchAppToken,
  fetchDevToken,
  forgetToken,
  hintFor,
  listenForTokens,
  originOf,
  pageConfig,
  rememberToken,
  rememberedToken,
  takeFragmentToken,
} from "./signin.js";
import { dayLabel, isLong, renderText, startOfDay } from "./render.js";
import * as notify from "./notify.js";
import { openPicker } from "./picker.js";
import { installModeration } from "./moderation.js";

// Messages fetched per history page, on opening a conversation and on scrolling back.
const HISTORY_PAGE = 30;
// The server's unread_count_max by default: a badge at it reads "999+".
const UNREAD_COUNT_MAX = 999;
// Scrolling within this many pixels of the top loads older messages.
const NEAR_TOP_PX = 80;
// A view within this many pixels of the bottom follows new messages.
const NEAR_BOTTOM_PX = 60;
// While the user types, the page renews their typing indicator this often (the server relays
// at most one every 2 s, and each lasts 5 s: a renewal every 2.5 s keeps it shown).
const TYPING_RENEW_MS = 2_500;
// Replies fetched per thread page, on opening a thread and on scrolling back in it.
const THREAD_PAGE = 50;
// Authors a thread summary names (the server's limit too).
const THREAD_USERS_SHOWN = 5;
// One author's messages less than this far apart are grouped under one name and time.
const GROUP_MS = 5 * 60_000;
// Inbox pages fetched after the connect reply's, at most (each of the server's inbox_limit).
const INBOX_PAGES = 10;
// The tab's title; an unread total goes in front of it: "(3) actorim chat".
const TITLE = document.title;
// How long an error notice stays up.
const NOTICE_MS = 6000;
// Reconnect quickly after a server restart, never hammer a server that stays down.
const CLIENT_OPTIONS = {
  heartbeat: 20_000,
  backoff: { floor: 300, cap: 5_000 },
  maxFailures: 12,
  cooldown: 30_000,
};
// Width below which one pane shows at a time (matches style.css).
const NARROW = window.matchMedia("(max-width: 720px)");

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

const ui = {
  back: $("back"),
  conn: $("conn-state"),
  me: $("me"),
  signout: $("signout"),
  notifyToggle: $("notify-toggle"),
  banner: $("conn-banner"),
  bannerText: $("conn-banner-text"),
  retry: $("retry-now"),
  notice: $("notice"),
  signin: $("signin"),
  signinForm: $("signin-form"),
  signinName: $("signin-name"),
  signinError: $("signin-error"),
  signinHint: $("signin-hint"),
  signinLogin: $("signin-login"),
  tokenForm: $("token-form"),
  signinToken: $("signin-token"),
  chat: $("chat"),
  joinForm: $("join-form"),
  joinRoom: $("join-room"),
  roomList: $("room-list"),
  dmForm: $("dm-form"),
  dmUser: $("dm-user"),
  dmList: $("dm-list"),
  peopleList: $("people-list"),
  empty: $("empty-conversation"),
  open: $("open-conversation"),
  title: $("conv-title"),
  sub: $("conv-sub"),
  leave: $("leave-room"),
  editRoom: $("edit-room"),
  topic: $("conv-topic"),
  roomEditForm: $("room-edit-form"),
  roomTitleInput: $("room-title-input"),
  roomTopicInput: $("room-topic-input"),
  roomEditCancel: $("room-edit-cancel"),
  browseRooms: $("browse-rooms"),
  directory: $("directory"),
  directoryForm: $("directory-form"),
  directoryQuery: $("directory-query"),
  directoryList: $("directory-list"),
  directoryMore: $("directory-more"),
  directoryClose: $("directory-close"),
  members: $("member-list"),
  membersMore: $("members-more"),
  messages: $("messages"),
  historyStatus: $("history-status"),
  messageList: $("message-list"),
  jump: $("jump-latest"),
  typing: $("typing"),
  composer: $("composer"),
  input: $("composer-input"),
  sendButton: $("composer-send"),
  threadPanel: $("thread-panel"),
  threadClose: $("thread-close"),
  threadMessages: $("thread-messages"),
  threadRoot: $("thread-root"),
  threadStatus: $("thread-status"),
  threadList: $("thread-list"),
  threadReplying: $("thread-replying"),
  threadReplyingText: $("thread-replying-text"),
  threadReplyingCancel: $("thread-replying-cancel"),
  threadComposer: $("thread-composer"),
  threadInput: $("thread-input"),
};

const app = {
  config: { dev: false, login_url: null, token_url: null }, // the server's /page/config
  client: null,
  fixedToken: false, // a token handed over with no endpoint to renew it: the client stops on its end
  me: null,
  everConnected: false,
  replaced: false, // replaced by a newer connection of the user: stays down until asked
  link: { state: State.DISCONNECTED, retryAt: null },
  convs: new Map(), // key -> conversation
  openKey: null,
  presence: new Map(), // user -> "online" | "offline"
  watched: new Set(),
  receipts: new Map(), // mid of my direct message -> "delivered" | "read"
  readSent: new Set(),
  visibleUnread: new Set(),
  rendered: new Map(), // item key -> {sig, el} for the open conversation
  editing: null, // the mid of my message the composer edits, or null
  expanded: new Set(), // item keys of long messages the user expanded
  counted: new Set(), // conversations whose counts came with this connection's inbox
  reopen: null, // the conversation open before the reload, opened once it is known
  inboxCursor: null, // where the inbox's next page starts, until the link is up to ask for it
  bannerTimer: null,
  noticeTimer: null,
  typing: new TypingTracker(), // who is typing in which conversation (conv key)
  typingSent: new Map(), // conv key -> when this page last sent typing there
  typingTimer: null,
  // The open thread: {conv (key), root (mid), rootMsg, replies: mid -> msg, more, loading,
  // replyTo (the mid the next reply answers), rendered}, or null.
  thread: null,
};

const roomKey = (name) => `room:${name}`;
const dmKey = (user) => `dm:${user}`;

function newConv(kind, name) {
  return {
    key: kind === "room" ? roomKey(name) : dmKey(name),
    kind,
    name,
    messages: new Map(), // mid -> msg
    pending: new Map(), // cid -> {cid, body, ts, failed}
    members: new Set(), // online in the room now (join reply, member events)
    roster: [], // every member, online or not: [{user, status}] from the members command
    rosterCursor: null, // where the next page of members starts, or null: all shown
    title: "",
    topic: "",
    more: true,
    loading: false,
    loaded: false,
    divider: null, // the marker when the conversation was opened with unread messages: "New" below
    marker: 0, // this user's read marker: the server's, shared by all their pages
    unread: 0, // messages from others after it (the badge)
    mentions: 0, // of those, the ones that mention this user
  };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
  clearTimeout(app.noticeTimer);
  app.noticeTimer = setTimeout(() => (ui.notice.hidden = true), NOTICE_MS);
}

// -- signing in -----------------------------------------------------------------------------------

// Set by a sign-out for the next load: do not sign in again through the application's endpoint.
const SIGNED_OUT_KEY = "actorim.signedOut";
// A reason the last session ended, shown on the sign-in form after the reload.
const ENDED_KEY = "actorim.ended";

async function signInByName(user) {
  ui.signinError.textContent = "";
  try {
    await fetchDevToken(user); // fail here, on the form, rather than in a reconnect loop
  } catch (err) {
    const unreachable = err.message === "Failed to fetch";
    ui.signinError.textContent = unreachable ? "The server cannot be reached." : err.message;
    return;
  }
  localStorage.setItem("actorim.user", user);
  startChat(user, () => fetchDevToken(user));
}

/** Sign in with a token the application handed over (fragment, message, paste, its endpoint). */
function signInWithToken(token) {
  if (app.client !== null) return;
  const claims = claimsOf(token);
  if (claims === null) {
    ui.signinError.textContent = "That is not a token: copy the whole token the application gave you.";
    return;
  }
  if (expired(claims, Date.now())) {
    forgetToken();
    ui.signinError.textContent = "That token has expired: get a new one from the application.";
    return;
  }
  sessionStorage.removeItem(SIGNED_OUT_KEY);
  rememberToken(token);
  const tokenUrl = app.config.token_url;
  if (!tokenUrl) {
    // A fixed token: the client stops when the server refuses it, and the page says so.
    startChat(claims.sub, token);
    return;
  }
  // The handed token opens the first connection; every later one (a reconnect, the server's
  // `refresh`) comes fresh from the application's endpoint.
  let handed = token;
  startChat(claims.sub, async () => {
    if (handed !== null) {
      const first = handed;
      handed = null;
      return first;
    }
    const fresh = await fetchAppToken(tokenUrl);
    if (fresh === null || claimsOf(fresh)?.sub !== claims.sub) {
      endSession("You are signed out of the application: sign in again.");
      throw new Error("signed out of the application");
    }
    rememberToken(fresh);
    return fresh;
  });
}

/** Back to the sign-in form with `reason` (a token refused, a sign-out elsewhere). */
function endSession(reason) {
  app.client?.close();
  app.client = null;
  forgetToken();
  sessionStorage.setItem(ENDED_KEY, reason);
  location.reload();
}

function startChat(user, token) {
  app.me = user;
  app.fixedToken = typeof token === "string";
  ui.me.textContent = user;
  ui.signout.hidden = false;
  ui.signin.hidden = true;
  ui.chat.hidden = false;

  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const client = new ActorimClient(`${scheme}://${location.host}/ws`, { ...CLIENT_OPTIONS, token });
  app.client = client;
  client.on("state", onState);
  client.on("msg", onMessage);
  client.on("joined", onJoined);
  client.on("member", onMember);
  client.on("conversations", onConversations);
  client.on("room", onRoomChanged);
  client.on("presence", ({ user: who, status }) => setPresence(who, status));
  client.on("receipt", onReceipt);
  client.on("marker", onMarker);
  client.on("edit", onChange);
  client.on("delete", onChange);
  client.on("reaction", onReaction);
  client.on("typing", onTyping);
  client.on("error", ({ message }) => showNotice(message));
  installModeration({
    client, me: user, showNotice, messages: ui.messages, members: ui.members,
    currentRoom: () => (openConv()?.kind === "room" ? openConv().name : null),
  });
  client.connect().catch((err) => {
    if (err.code === "unauthenticated") return; // onState ends the session
    showNotice(err.message);
  });

  const saved = loadLists();
  for (const room of saved.rooms) joinRoom(room, { open: false });
  for (const peer of saved.dms) addDm(peer);
  app.reopen = localStorage.getItem(`actorim.open.${app.me}`);
  renderSidebar();
  renderNotify();
  reopenLast();
}

/** The conversation open before the reload, once the page knows it (saved or from the inbox). */
function reopenLast() {
  if (app.reopen === null || app.openKey !== null || !app.convs.has(app.reopen)) return;
  const key = app.reopen;
  app.reopen = null;
  openConversation(key);
}

/** Show the ways in this server offers, then take the first token already at hand. */
async function startSignIn() {
  const ended = sessionStorage.getItem(ENDED_KEY);
  sessionStorage.removeItem(ENDED_KEY);
  try {
    app.config = await pageConfig();
  } catch {
    ui.signinError.textContent = "The server cannot be reached.";
    return;
  }
  const { dev, login_url: loginUrl, token_url: tokenUrl } = app.config;
  if (ended) ui.signinError.textContent = ended;
  ui.signinHint.textContent = hintFor(app.config);
  ui.signinHint.hidden = false;
  ui.signinForm.hidden = !dev;
  ui.tokenForm.hidden = dev;
  ui.signinLogin.hidden = dev || !loginUrl;
  if (loginUrl) ui.signinLogin.href = loginUrl;
  const trusted = loginUrl ? [originOf(loginUrl)].filter(Boolean) : [];
  listenForTokens(trusted, signInWithToken);

  const handed = takeFragmentToken();
  if (handed) return signInWithToken(handed);
  const kept = rememberedToken();
  if (kept) return signInWithToken(kept);
  if (tokenUrl && !ended && !sessionStorage.getItem(SIGNED_OUT_KEY)) {
    const token = await fetchAppToken(tokenUrl).catch(() => null);
    if (token) return signInWithToken(token);
  }
  const remembered = dev ? localStorage.getItem("actorim.user") : null;
  if (remembered) {
    ui.signinName.value = remembered;
    return signInByName(remembered);
  }
  (dev ? ui.signinName : ui.signinLogin.hidden ? ui.signinToken : ui.signinLogin).focus();
}

function signOut() {
  app.client?.close();
  app.client = null;
  localStorage.removeItem("actorim.user");
  forgetToken();
  sessionStorage.setItem(SIGNED_OUT_KEY, "1");
  location.reload();
}

function loadLists() {
  try {
    const data = JSON.parse(localStorage.getItem(`actorim.lists.${app.me}`) || "{}");
    return { rooms: data.rooms || [], dms: data.dms || [] };
  } catch {
    return { rooms: [], dms: [] };
  }
}

function saveLists() {
  const rooms = [];
  const dms = [];
  for (const conv of app.convs.values()) (conv.kind === "room" ? rooms : dms).push(conv.name);
  localStorage.setItem(`actorim.lists.${app.me}`, JSON.stringify({ rooms, dms }));
}

// -- the link's state -----------------------------------------------------------------------------

function onState({ state, delay, final, code }) {
  app.link = { state, retryAt: delay !== undefined ? Date.now() + delay : null };
  // Replaced by a newer connection of this user (past max_connections_per_user): the page
  // stays disconnected until asked ("Retry now"), or it would replace another in turn.
  app.replaced = Boolean(final && code === CloseCode.REPLACED);
  if (final && app.fixedToken && state === State.DISCONNECTED && code !== undefined) {
    endSession("Your sign-in has ended (the token expired or was revoked): sign in again.");
    return;
  }
  if (state === State.CONNECTED) {
    app.everConnected = true;
    refreshPresence();
    if (app.inboxCursor !== null) loadMoreInbox(app.inboxCursor, INBOX_PAGES);
    app.inboxCursor = null;
    refreshCounts([...app.convs.values()].filter((conv) => !app.counted.has(conv.key)));
    const conv = openConv();
    if (conv && !conv.loaded) loadOlder(conv);
  }
  renderLink();
}

function renderLink() {
  const { state, retryAt } = app.link;
  const seconds = retryAt ? Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) : 0;
  const waiting = retryAt && seconds > 0 ? ` in ${seconds}\u00a0s` : "";
  let pill;
  let banner = null;
  if (app.client === null) {
    pill = "Signed out";
  } else if (state === State.CONNECTED) {
    pill = "Online";
  } else if (app.replaced) {
    pill = "Disconnected";
    banner = "Disconnected: your account opened more connections elsewhere than the server " +
      "allows at once. Retry to connect this page again.";
  } else if (state === State.CIRCUIT_OPEN) {
    pill = "Offline";
    banner = `The server is unreachable. Trying again${waiting}.`;
  } else if (app.everConnected) {
    pill = "Reconnecting…";
    banner = `Connection lost. Reconnecting${state === State.CONNECTING ? "" : waiting}…`;
  } else {
    pill = "Connecting…";
    banner =
      state === State.CONNECTING
        ? "Connecting to the server…"
        : `Cannot reach the server. Trying again${waiting}…`;
  }
  ui.conn.textContent = pill;
  // Presence is stale while this page is disconnected: every dot greys until it is back.
  ui.chat.dataset.link = state === State.CONNECTED ? "up" : "down";
  ui.conn.dataset.state = state;
  ui.conn.classList.toggle("active", app.client !== null);
  ui.banner.dataset.state = state;
  ui.banner.hidden = banner === null;
  ui.bannerText.textContent = banner || "";
  ui.retry.hidden = state === State.CONNECTING;
  clearInterval(app.bannerTimer);
  app.bannerTimer = banner && retryAt ? setInterval(renderLink, 500) : null;
}

// -- events from the server -----------------------------------------------------------------------

function convOf(msg) {
  if (msg.room !== undefined) return app.convs.get(roomKey(msg.room)) || null;
  const peer = msg.from === app.me ? msg.to : msg.from;
  return addDm(peer);
}

function onMessage(msg) {
  const conv = convOf(msg);
  if (!conv) return;
  if (msg.from === app.me && msg.cid !== undefined) conv.pending.delete(msg.cid);
  const isNew = !conv.messages.has(msg.mid);
  conv.messages.set(msg.mid, msg);
  if (isReply(msg) && isNew) onReply(conv, msg);
  app.typing.stopped(conv.key, msg.from); // their message ends their indicator
  const mentionsMe = (msg.mentions || []).includes(app.me);
  if (isVisible(conv)) markRead(conv);
  else if (msg.from !== app.me && msg.seq > conv.marker) {
    conv.unread += 1;
    if (mentionsMe) conv.mentions += 1;
    if (isNew && (conv.kind === "dm" || mentionsMe)) {
      const where = conv.kind === "dm" ? msg.from : `${msg.from} in # ${conv.title || conv.name}`;
      notify.show(where, bodyText(msg.body), conv.key, () => openConversation(conv.key));
    }
  }
  renderSidebar();
  if (conv.key === app.openKey) renderMessages();
  renderTyping();
}

function onTyping({ room, user, ttl_ms: ttlMs }) {
  if (user === app.me) return; // this user typing on another device
  const key = room !== undefined ? roomKey(room) : dmKey(user);
  if (room !== undefined && !app.convs.has(key)) return;
  app.typing.heard(key, user, ttlMs, Date.now());
  renderTyping();
}

// -- edits and deletes: a message changes in place ------------------------------------------------

function onChange(change) {
  const conv = convOf(change);
  if (!conv) return;
  const before = conv.messages.get(change.mid);
  if (change.t === "delete" && before && before.from !== app.me && before.seq > conv.marker
      && !before.deleted && conv.unread > 0) {
    conv.unread -= 1; // a deleted message no longer counts
    if ((before.mentions || []).includes(app.me) && conv.mentions > 0) conv.mentions -= 1;
    renderSidebar();
  }
  let gone = null; // a reply this delete takes out of its thread
  const changed = updateMessage(conv, change.mid, (msg) => {
    if (change.t === "delete") {
      if (isReply(msg) && !msg.deleted) gone = msg;
      const { body: _erased, ...rest } = msg;
      return { ...rest, deleted: true, edited: undefined };
    }
    if (change.deleted || msg.deleted) return null;
    return { ...msg, body: change.body, edited: change.edited };
  });
  if (!changed) return; // not loaded here: history will show it as it is now
  if (gone) updateMessage(conv, gone.thread, (root) => withSummary(root, -1, gone));
  if (app.editing === change.mid && change.t === "delete") stopEditing();
  if (conv.key === app.openKey) renderMessages();
  renderThread();
}

// -- reactions: chips under a message, a click toggles one's own ---------------------------------

const QUICK_REACTION = "👍";

function onReaction(event) {
  const conv = convOf(event);
  if (!conv) return;
  const mine = event.user === app.me;
  updateMessage(conv, event.mid, (msg) => {
    if (msg.deleted) return null; // history will count it
    const reactions = (msg.reactions || []).map((r) => ({ ...r }));
    let chip = reactions.find((r) => r.key === event.key);
    if (!chip) {
      if (!event.on) return null;
      chip = { key: event.key, count: 0, me: false };
      reactions.push(chip);
    }
    chip.count += event.on ? 1 : -1;
    if (mine) chip.me = event.on;
    return { ...msg, reactions: reactions.filter((r) => r.count > 0) };
  });
  if (conv.key === app.openKey) renderMessages();
  renderThread();
}

function toggleReaction(mid, key, on) {
  app.client.react(mid, key, { on }).catch((err) => showNotice(err.message));
}

function reactionChips(item) {
  const reactions = item.reactions || [];
  if (!item.mid || item.deleted || reactions.length === 0) return null;
  return el("div", { class: "reactions", "data-testid": "reactions" },
    ...reactions.map((r) =>
      el("button", {
        type: "button",
        class: `reaction${r.me ? " me" : ""}`,
        "data-testid": "reaction",
        "data-key": r.key,
        "data-count": r.count,
        "data-me": r.me ? "true" : "false",
        "aria-pressed": r.me ? "true" : "false",
        title: r.me ? "Remove your reaction" : "React with this too",
        "aria-label": `${r.key} ${r.count}${r.me ? ", yours among them" : ""}`,
        text: `${r.key} ${r.count}`,
        onclick: () => toggleReaction(item.mid, r.key, !r.me),
      })));
}

// -- replies and threads: a side panel per thread, "N replies" under its root ---------------------

// A reply names its thread's root (a string); a root read from history carries its summary there.
const isReply = (msg) => typeof msg.thread === "string";
const summaryOf = (msg) => (msg && typeof msg.thread === "object" ? msg.thread : null);

// Every copy of message `mid` the page holds (the conversation's, the open thread's) changed by
// `update` (which answers null to leave one as it is); whether any copy was there.
function updateMessage(conv, mid, update) {
  const thread = app.thread && app.thread.conv === conv.key ? app.thread : null;
  let found = false;
  for (const copies of thread ? [conv.messages, thread.replies] : [conv.messages]) {
    const msg = copies.get(mid);
    if (!msg) continue;
    found = true;
    const next = update(msg);
    if (next) copies.set(mid, next);
  }
  if (thread && thread.root === mid && thread.rootMsg) {
    found = true;
    thread.rootMsg = update(thread.rootMsg) || thread.rootMsg;
  }
  return found;
}

// `root` with its summary after one reply more (+1) or less (-1): the page's estimate from the
// events, until history says again.
function withSummary(root, delta, reply) {
  const old = summaryOf(root) || { count: 0, last_ts: reply.ts, users: [], participants: 0 };
  const summary = { ...old, count: old.count + delta, users: [...old.users] };
  if (delta > 0) {
    summary.last_ts = reply.ts;
    if (!summary.users.includes(reply.from)) {
      if (summary.users.length < THREAD_USERS_SHOWN) summary.users.push(reply.from);
      summary.participants += 1;
    }
  }
  const { thread: _old, ...rest } = root;
  return summary.count > 0 ? { ...rest, thread: summary } : rest;
}

function onReply(conv, msg) {
  updateMessage(conv, msg.thread, (root) => withSummary(root, 1, msg));
  const thread = app.thread;
  if (thread && thread.conv === conv.key && thread.root === msg.thread) {
    thread.replies.set(msg.mid, msg);
    renderThread({ bottom: true });
  }
}

function openThread(conv, root, replyTo = root) {
  if (!app.thread || app.thread.conv !== conv.key || app.thread.root !== root) {
    const replies = new Map();
    for (const msg of conv.messages.values()) if (msg.thread === root) replies.set(msg.mid, msg);
    app.thread = {
      conv: conv.key,
      root,
      rootMsg: conv.messages.get(root) || null,
      replies,
      more: true,
      loading: false,
      replyTo: root,
      rendered: new Map(),
    };
    ui.threadList.replaceChildren();
    loadThread(app.thread);
  }
  app.thread.replyTo = replyTo;
  ui.threadPanel.hidden = false;
  ui.chat.classList.add("show-thread");
  renderThread({ bottom: true });
  ui.threadInput.focus();
}

function closeThread() {
  app.thread = null;
  ui.threadPanel.hidden = true;
  ui.chat.classList.remove("show-thread");
  ui.threadRoot.replaceChildren();
  ui.threadList.replaceChildren();
}

async function loadThread(thread) {
  if (thread.loading || !thread.more || app.link.state !== State.CONNECTED) return;
  thread.loading = true;
  renderThread();
  let oldest;
  for (const msg of thread.replies.values()) if (oldest === undefined || msg.seq < oldest) oldest = msg.seq;
  try {
    const page = await app.client.thread(thread.root, { limit: THREAD_PAGE, before: oldest });
    if (app.thread !== thread) return;
    thread.rootMsg = page.root;
    const conv = app.convs.get(thread.conv);
    if (conv && conv.messages.has(thread.root)) conv.messages.set(thread.root, page.root);
    for (const msg of page.messages) if (!thread.replies.has(msg.mid)) thread.replies.set(msg.mid, msg);
    thread.more = page.more;
  } catch (err) {
    if (app.thread !== thread) return;
    if (err.code !== "disconnected") showNotice(`Could not load the thread: ${err.message}`);
    if (err.code === "not_found") closeThread();
  } finally {
    thread.loading = false;
  }
  if (app.thread !== thread) return;
  if (oldest === undefined) renderThread({ bottom: true });
  else renderThread({ prepend: true });
  const conv = app.convs.get(thread.conv);
  if (conv && conv.key === app.openKey) renderMessages();
}

function sendReply(text) {
  const thread = app.thread;
  const conv = thread && app.convs.get(thread.conv);
  if (!conv) return;
  const target = conv.kind === "room" ? { room: conv.name } : { to: conv.name };
  const replyTo = thread.replyTo;
  thread.replyTo = thread.root;
  app.typingSent.delete(conv.key);
  app.client.send({ ...target, body: text, reply_to: replyTo }).catch((err) => showNotice(err.message));
  renderThread({ bottom: true });
}

function renderThread({ bottom = false, prepend = false } = {}) {
  const thread = app.thread;
  const conv = thread && app.convs.get(thread.conv);
  if (!conv) return;
  const box = ui.threadMessages;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < NEAR_BOTTOM_PX;
  const options = { cache: thread.rendered, inThread: true };
  const root = thread.rootMsg || conv.messages.get(thread.root);
  ui.threadRoot.replaceChildren(...(root ? [messageElement(conv, root, options)] : []));
  const replies = [...thread.replies.values()].sort((a, b) => a.seq - b.seq);
  ui.threadList.replaceChildren(...replies.map((msg) => messageElement(conv, msg, options)));
  const count = replies.length;
  ui.threadStatus.textContent = thread.loading
    ? "Loading replies…"
    : thread.more ? "" : count ? `${count} ${count === 1 ? "reply" : "replies"}` : "No replies yet";
  const answered = thread.replyTo !== thread.root ? thread.replies.get(thread.replyTo) : null;
  ui.threadReplying.hidden = !answered;
  ui.threadReplyingText.textContent = answered ? `Replying to ${answered.from}` : "";
  if (bottom || (atBottom && !prepend)) box.scrollTop = box.scrollHeight;
  else if (prepend) box.scrollTop = box.scrollHeight - fromBottom;
}

// What a reply in the thread answers, when that is not the root: its author and first words.
function replyQuote(item) {
  const thread = app.thread;
  if (!thread || !isReply(item) || item.reply_to === item.thread) return null;
  const answered = thread.replies.get(item.reply_to);
  const text = !answered ? "an earlier reply" : answered.deleted ? `${answered.from}: (deleted)`
    : `${answered.from}: ${bodyText(answered.body)}`;
  return el("div", { class: "reply-quote", "data-testid": "reply-quote", text: `↪ ${text}` });
}

function threadLink(conv, item) {
  const summary = summaryOf(item);
  if (!summary || !item.mid) return null;
  const replies = `${summary.count} ${summary.count === 1 ? "reply" : "replies"}`;
  return el("button", {
    type: "button",
    class: "link-button thread-link",
    "data-testid": "thread-link",
    "data-count": summary.count,
    title: `Replies from ${summary.users.join(", ")}`,
    text: replies,
    onclick: () => openThread(conv, item.mid),
  });
}

function startEditing(item) {
  app.editing = item.mid;
  ui.input.value = bodyText(item.body);
  ui.input.placeholder = "Edit message (Esc to cancel)";
  ui.sendButton.textContent = "Save";
  ui.composer.dataset.editing = item.mid;
  ui.input.focus();
}

function stopEditing() {
  app.editing = null;
  ui.input.value = "";
  ui.input.placeholder = "Message";
  ui.sendButton.textContent = "Send";
  delete ui.composer.dataset.editing;
}

function saveEdit(mid, text) {
  stopEditing();
  app.client.edit(mid, text).catch((err) => showNotice(err.message));
}

function deleteMessage(mid) {
  // The Delete button goes with the message: the focus goes to the composer of its pane.
  const inThread = document.activeElement?.closest(".thread-panel") != null;
  if (!window.confirm("Delete this message for everyone?")) return;
  if (app.editing === mid) stopEditing();
  app.client.delete(mid).catch((err) => showNotice(err.message));
  (inThread ? ui.threadInput : ui.input).focus();
}

function onJoined(reply) {
  const conv = app.convs.get(roomKey(reply.room));
  if (!conv) return;
  conv.members = new Set(reply.members);
  conv.title = reply.title || "";
  conv.topic = reply.topic || "";
  if (conv.key === app.openKey) loadRoster(conv); // the list now holds this user too
  watchUsers(reply.members);
  if (!reply.resumed) refreshCounts([conv]);
  if (reply.resumed && !reply.recovered) {
    // Some missed messages could not be replayed: start again from the latest page.
    conv.messages.clear();
    conv.more = true;
    conv.loaded = false;
    if (conv.key === app.openKey) loadOlder(conv);
  }
  renderSidebar();
  if (conv.key === app.openKey) renderHeader();
}

// The inbox of the connect reply: the user's rooms (joined on any device) and direct
// conversations, with their titles; the room list is made from it.
function onConversations({ conversations, more, cursor }) {
  app.counted = new Set();
  addInbox(conversations);
  // The connect reply comes before the link counts as up: the rest is asked for once it is.
  app.inboxCursor = more && cursor ? cursor : null;
}

/** The inbox's later pages, while there are more (at most `pages` of them). */
function loadMoreInbox(cursor, pages) {
  if (pages <= 0 || app.client === null) return;
  app.client
    .moreConversations({ before: cursor })
    .then((page) => {
      addInbox(page.conversations);
      if (page.more && page.cursor) loadMoreInbox(page.cursor, pages - 1);
    })
    .catch(() => {}); // the conversations known so far stay listed
}

/** Entries of the inbox: rooms and direct conversations with their titles and counts. */
function addInbox(conversations) {
  for (const entry of conversations) {
    if (typeof entry.room === "string") {
      const conv = ensureRoom(entry.room);
      conv.title = entry.title || "";
      conv.topic = entry.topic || "";
    } else if (typeof entry.with === "string") {
      addDm(entry.with);
    }
    const conv = convOfMarker(entry);
    if (conv && Number.isInteger(entry.unread) && Number.isInteger(entry.marker)) {
      app.counted.add(conv.key);
      setCounts(conv, entry.marker, entry);
      if (isVisible(conv)) markRead(conv);
    }
  }
  saveLists();
  renderSidebar();
  if (app.openKey) renderHeader();
  reopenLast();
}

/** The conversation of `kind` ("room" or "dm") named `name`, made if new: `{conv, created}`. */
function ensureConv(kind, name) {
  const key = kind === "room" ? roomKey(name) : dmKey(name);
  const known = app.convs.get(key);
  if (known) return { conv: known, created: false };
  const conv = newConv(kind, name);
  app.convs.set(key, conv);
  return { conv, created: true };
}

function ensureRoom(name) {
  return ensureConv("room", name).conv;
}

function onRoomChanged({ room, title, topic }) {
  const conv = app.convs.get(roomKey(room));
  if (!conv) return;
  conv.title = title;
  conv.topic = topic;
  renderSidebar();
  if (conv.key === app.openKey) renderHeader();
}

function onMember({ room, user, state }) {
  if (user === app.me) {
    // This user joined or left the room on another device.
    if (state === "joined") ensureRoom(room);
    else if (app.convs.has(roomKey(room))) {
      app.convs.delete(roomKey(room));
      if (app.openKey === roomKey(room)) closeConversation();
    }
    saveLists();
    renderSidebar();
    return;
  }
  const conv = app.convs.get(roomKey(room));
  if (!conv) return;
  if (conv.key === app.openKey) loadRoster(conv);
  if (state === "joined") {
    conv.members.add(user);
    watchUsers([user]);
  } else {
    conv.members.delete(user);
  }
  renderSidebar();
  if (conv.key === app.openKey) renderHeader();
}

// -- read markers: the badge is the server's count, cleared on every page of this user -----------

function convOfMarker(where) {
  if (where.room !== undefined) return app.convs.get(roomKey(where.room)) || null;
  return where.with !== undefined ? addDm(where.with) : null;
}

/** The server's counts of a conversation (an `unread` entry, a `read` reply, a `marker` event,
 * whose `seq` is the marker); an older marker than the one held changes nothing. */
function setCounts(conv, marker, { unread, mentions }) {
  if (marker < conv.marker) return;
  // Open before its counts were known (a reload reopening it): "New messages" goes here.
  if (isVisible(conv) && unread > 0 && conv.divider === null && !conv.dividerShown) {
    conv.divider = marker;
  }
  conv.marker = marker;
  // Counted by the server when it read them; a message that reached the page since (its event
  // may overtake this answer) still counts: never fewer than the page holds after the marker.
  conv.unread = isVisible(conv) ? 0 : Math.max(unread, heldAfter(conv, marker));
  conv.mentions = isVisible(conv) ? 0 : mentions;
  renderSidebar();
}

/** Messages of others after `marker` that the page holds, deleted ones aside. */
function heldAfter(conv, marker) {
  let count = 0;
  for (const msg of conv.messages.values()) {
    if (msg.seq > marker && msg.from !== app.me && !msg.deleted) count += 1;
  }
  return count;
}

function onMarker(event) {
  const conv = convOfMarker(event);
  if (conv) setCounts(conv, event.seq, event);
}

function refreshCounts(convs) {
  if (!convs.length || app.link.state !== State.CONNECTED) return;
  const rooms = convs.filter((c) => c.kind === "room").map((c) => c.name);
  const peers = convs.filter((c) => c.kind === "dm").map((c) => c.name);
  app.client
    .unread({ rooms, with: peers })
    .then(({ conversations }) => {
      for (const entry of conversations) {
        const conv = convOfMarker(entry);
        if (!conv) continue;
        setCounts(conv, entry.marker, entry);
        if (isVisible(conv)) markRead(conv);
      }
    })
    .catch(() => {}); // the badges stay as the page counted them
}

/** The open conversation is on screen: read up to the newest message shown. */
function markRead(conv) {
  conv.unread = 0;
  conv.mentions = 0;
  let newest = 0;
  for (const msg of conv.messages.values()) newest = Math.max(newest, msg.seq);
  if (newest <= conv.marker || app.client === null) return;
  conv.marker = newest;
  const where = conv.kind === "room" ? { room: conv.name } : { with: conv.name };
  app.client
    .read({ ...where, seq: newest })
    .then((reply) => setCounts(conv, reply.marker, reply))
    .catch(() => {});
}

function onReceipt({ mid, status }) {
  if (app.receipts.get(mid) === "read") return;
  app.receipts.set(mid, status);
  const conv = openConv();
  if (conv && conv.kind === "dm") renderMessages();
}

function setPresence(user, status) {
  app.presence.set(user, status);
  renderSidebar();
  if (app.openKey) renderHeader();
}

function watchUsers(users) {
  const fresh = users.filter((u) => u !== app.me && !app.watched.has(u));
  if (!fresh.length) return;
  for (const u of fresh) app.watched.add(u);
  app.client.watch(fresh).catch(() => {});
  if (app.link.state === State.CONNECTED) {
    app.client
      .presence(fresh)
      .then(({ statuses }) => Object.entries(statuses).forEach(([u, s]) => setPresence(u, s)))
      .catch(() => {});
  }
}

function refreshPresence() {
  if (!app.watched.size) return;
  app.client
    .presence([...app.watched])
    .then(({ statuses }) => Object.entries(statuses).forEach(([u, s]) => setPresence(u, s)))
    .catch(() => {});
}

// -- conversations --------------------------------------------------------------------------------

async function joinRoom(name, { open = true } = {}) {
  const key = roomKey(name);
  if (ensureConv("room", name).created) saveLists();
  renderSidebar();
  if (open) openConversation(key);
  try {
    await app.client.join(name);
  } catch (err) {
    if (err.code === "closed") return;
    showNotice(`Could not join ${name}: ${err.message}`);
    app.convs.delete(key);
    saveLists();
    if (app.openKey === key) closeConversation();
    renderSidebar();
  }
}

async function leaveRoom(conv) {
  app.convs.delete(conv.key);
  saveLists();
  closeConversation();
  renderSidebar();
  try {
    await app.client.leave(conv.name);
  } catch (err) {
    showNotice(`Could not leave ${conv.name}: ${err.message}`);
  }
}

function addDm(peer) {
  const { conv, created } = ensureConv("dm", peer);
  if (created) {
    saveLists();
    watchUsers([peer]);
    renderSidebar();
  }
  return conv;
}

function openDm(user) {
  if (user === app.me) {
    showNotice("That is you: pick someone else to message.");
    return;
  }
  addDm(user);
  openConversation(dmKey(user));
}

function openConv() {
  return app.openKey ? app.convs.get(app.openKey) || null : null;
}

function isVisible(conv) {
  return conv.key === app.openKey && document.visibilityState === "visible";
}

function openConversation(key) {
  if (app.editing !== null) stopEditing();
  if (app.thread && app.thread.conv !== key) closeThread();
  const conv = app.convs.get(key);
  if (!conv) return;
  if (app.openKey !== key) {
    app.rendered.clear();
    app.visibleUnread.clear();
    readObserver.disconnect();
    ui.messageList.replaceChildren();
  }
  if (app.openKey !== key) {
    conv.divider = conv.unread > 0 ? conv.marker : null;
    conv.dividerShown = false;
  }
  app.openKey = key;
  localStorage.setItem(`actorim.open.${app.me}`, key);
  markRead(conv);
  ui.empty.hidden = true;
  ui.open.hidden = false;
  ui.chat.classList.add("show-conv");
  ui.back.hidden = !NARROW.matches;
  renderSidebar();
  renderHeader();
  renderMessages({ bottom: true });
  renderTyping();
  if (conv.kind === "room") loadRoster(conv);
  if (!conv.loaded) loadOlder(conv);
  if (!NARROW.matches) ui.input.focus();
}

function closeConversation() {
  closeThread();
  if (app.openKey !== null) localStorage.removeItem(`actorim.open.${app.me}`);
  app.openKey = null;
  app.rendered.clear();
  app.visibleUnread.clear();
  readObserver.disconnect();
  ui.messageList.replaceChildren();
  ui.open.hidden = true;
  ui.empty.hidden = false;
  ui.chat.classList.remove("show-conv");
  ui.back.hidden = true;
  renderSidebar();
}

async function loadOlder(conv) {
  if (conv.loading || !conv.more || app.link.state !== State.CONNECTED) return;
  conv.loading = true;
  renderHistoryStatus(conv);
  let oldest = null;
  for (const msg of conv.messages.values()) if (oldest === null || msg.seq < oldest) oldest = msg.seq;
  const query = conv.kind === "room" ? { room: conv.name } : { with: conv.name };
  query.limit = HISTORY_PAGE;
  if (oldest !== null) query.before = oldest;
  let fetched = false;
  try {
    const page = await app.client.history(query);
    if (app.convs.get(conv.key) !== conv) return;
    for (const msg of page.messages) conv.messages.set(msg.mid, msg);
    conv.more = page.more;
    conv.loaded = fetched = true;
  } catch (err) {
    if (err.code !== "disconnected") showNotice(`Could not load earlier messages: ${err.message}`);
  } finally {
    conv.loading = false;
  }
  if (conv.key !== app.openKey) return;
  if (isVisible(conv)) markRead(conv);
  renderMessages(oldest === null ? { bottom: true } : { prepend: true });
  // Keep loading while the view rests near the top: the page does not fill it (no scrolling
  // back would be possible), or it opened at a "New messages" divider there. Scrolling up from
  // the very top moves nothing, so no scroll event would ask for the page before it.
  if (fetched && conv.more && ui.messages.scrollTop < NEAR_TOP_PX) loadOlder(conv);
}

function sendMessage(text) {
  const conv = openConv();
  if (!conv) return;
  const cid = newCid();
  app.typingSent.delete(conv.key); // the message ends this user's indicator there
  const item = { cid, body: text, ts: Date.now(), failed: null };
  conv.pending.set(cid, item);
  renderMessages({ bottom: true });
  const target = conv.kind === "room" ? { room: conv.name } : { to: conv.name };
  app.client.send({ ...target, body: text, cid }).catch((err) => {
    if (!conv.pending.has(cid)) return;
    item.failed = err.message;
    if (conv.key === app.openKey) renderMessages();
  });
}

// While the user types, tell the conversation, at most once per TYPING_RENEW_MS.
function typed() {
  const conv = openConv();
  if (!conv || !ui.input.value.trim() || app.link.state !== State.CONNECTED) return;
  const now = Date.now();
  const last = app.typingSent.get(conv.key);
  if (last !== undefined && now - last < TYPING_RENEW_MS) return;
  app.typingSent.set(conv.key, now);
  const target = conv.kind === "room" ? { room: conv.name } : { to: conv.name };
  app.client.typing(target).catch(() => {}); // an indicator is not worth an error notice
}

// -- read receipts: a direct message counts as read once it is on screen --------------------------

const readObserver = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) {
      const mid = entry.target.dataset.mid;
      if (entry.isIntersecting) app.visibleUnread.add(mid);
      else app.visibleUnread.delete(mid);
    }
    flushReads();
  },
  { root: ui.messages, threshold: 0.5 },
);

function flushReads() {
  const conv = openConv();
  if (!conv || conv.kind !== "dm" || document.visibilityState !== "visible") return;
  for (const mid of app.visibleUnread) sendReceipt(mid);
  app.visibleUnread.clear();
}

function sendReceipt(mid) {
  if (app.readSent.has(mid)) return;
  app.readSent.add(mid);
  app.client.read(mid).catch(() => app.readSent.delete(mid));
}

// -- rendering ------------------------------------------------------------------------------------

function dot(user) {
  const status = user === app.me ? "online" : app.presence.get(user) || "offline";
  return el("span", { class: "dot", "data-status": status, "aria-hidden": "true" });
}

function badge(count, mentions) {
  if (!count) return null;
  const text = count >= UNREAD_COUNT_MAX ? `${UNREAD_COUNT_MAX}+` : String(count);
  const label = `${text} unread${mentions ? `, ${mentions} mentioning you` : ""}`;
  const attrs = { class: "unread", "data-testid": "unread", text, "aria-label": label };
  if (mentions) attrs["data-mentions"] = String(mentions);
  return el("span", attrs);
}

function renderSidebar() {
  const rooms = [];
  const dms = [];
  const people = new Set();
  const sorted = [...app.convs.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const conv of sorted) {
    const active = conv.key === app.openKey;
    const open = () => openConversation(conv.key);
    if (conv.kind === "room") {
      for (const m of conv.members) people.add(m);
      rooms.push(
        el("li", { class: active ? "active" : "", "data-testid": "room-item", "data-room": conv.name },
          el("button", { type: "button", onclick: open, "aria-current": active ? "true" : null },
            el("span", { class: "hash", text: "#", "aria-hidden": "true" }),
            el("span", { class: "name", text: conv.title || conv.name }),
            badge(conv.unread, conv.mentions))),
      );
    } else {
      people.add(conv.name);
      dms.push(
        el("li", { class: active ? "active" : "", "data-testid": "dm-item", "data-user": conv.name },
          el("button", { type: "button", onclick: open, "aria-current": active ? "true" : null },
            dot(conv.name),
            el("span", { class: "name", text: conv.name }),
            el("span", { class: "sr-only", text: `, ${app.presence.get(conv.name) || "offline"}` }),
            badge(conv.unread, conv.mentions))),
      );
    }
  }
  people.delete(app.me);
  const byPresence = [...people].sort((a, b) => {
    const online = (u) => (app.presence.get(u) === "online" ? 0 : 1);
    return online(a) - online(b) || a.localeCompare(b);
  });
  const persons = byPresence.map((user) =>
    el("li", { "data-testid": "person", "data-user": user, "data-status": app.presence.get(user) || "offline" },
      el("button", { type: "button", title: `Message ${user}`, onclick: () => openDm(user) },
        dot(user),
        el("span", { class: "name", text: user }),
        el("span", { class: "conv-sub", text: app.presence.get(user) === "online" ? "online" : "" }))),
  );
  const orElse = (items, text) => (items.length ? items : [el("li", { class: "placeholder", text })]);
  ui.roomList.replaceChildren(...orElse(rooms, "No rooms yet"));
  ui.dmList.replaceChildren(...orElse(dms, "No conversations yet"));
  ui.peopleList.replaceChildren(...orElse(persons, "Nobody around yet"));
  renderTitle();
}

/** The unread total in the tab's title, so that it shows from another tab. */
function renderTitle() {
  let total = 0;
  for (const conv of app.convs.values()) total += conv.unread;
  const text = total >= UNREAD_COUNT_MAX ? `${UNREAD_COUNT_MAX}+` : String(total);
  document.title = total ? `(${text}) ${TITLE}` : TITLE;
}

function renderNotify() {
  const state = notify.buttonState();
  ui.notifyToggle.hidden = state === "unsupported";
  ui.notifyToggle.dataset.state = state;
  ui.notifyToggle.setAttribute("aria-pressed", state === "on" ? "true" : "false");
  ui.notifyToggle.disabled = state === "blocked";
  ui.notifyToggle.textContent = {
    on: "Notifications on",
    off: "Notify me",
    blocked: "Notifications blocked",
    unsupported: "",
  }[state];
  ui.notifyToggle.title = {
    on: "Desktop notifications for direct messages and mentions: on (click to turn off)",
    off: "Get desktop notifications for direct messages and mentions",
    blocked: "The browser blocks notifications from this page: allow them in its settings",
    unsupported: "",
  }[state];
}

function renderHeader() {
  const conv = openConv();
  if (!conv) return;
  const isRoom = conv.kind === "room";
  ui.title.textContent = isRoom ? conv.title || `# ${conv.name}` : conv.name;
  ui.topic.textContent = isRoom ? conv.topic : "";
  ui.leave.hidden = !isRoom;
  ui.editRoom.hidden = !isRoom;
  ui.members.hidden = !isRoom;
  ui.membersMore.hidden = !isRoom || !conv.rosterCursor;
  if (!isRoom) ui.roomEditForm.hidden = true;
  if (isRoom) {
    // Every member, online or not (offline ones greyed); before the list arrives, those in
    // the room now.
    const roster = conv.roster.length
      ? conv.roster.map((m) => m.user)
      : [...conv.members].sort((a, b) => a.localeCompare(b));
    const statusOf = (user) => {
      if (user === app.me) return "online";
      const known = app.presence.get(user);
      if (known) return known;
      const listed = conv.roster.find((m) => m.user === user);
      return listed ? listed.status : conv.members.has(user) ? "online" : "offline";
    };
    // owner or moderator, from the members command (plain members carry no role)
    const roleOf = (user) => conv.roster.find((m) => m.user === user)?.role;
    const online = roster.filter((u) => statusOf(u) === "online").length;
    ui.sub.textContent = roster.length
      ? `${roster.length} member${roster.length === 1 ? "" : "s"}, ${online} online`
      : "";
    ui.members.replaceChildren(
      ...roster.map((user) =>
        el("li", {
          "data-testid": "member", "data-user": user, "data-status": statusOf(user),
          "data-role": roleOf(user),
        },
          dot(user),
          el("span", { text: user === app.me ? `${user} (you)` : user }),
          roleOf(user) ? el("span", { class: "role", "data-testid": "member-role", text: roleOf(user) }) : null),
      ),
    );
  } else {
    const status = app.presence.get(conv.name) || "offline";
    ui.sub.textContent = status;
    ui.sub.dataset.status = status;
  }
}

// A room's members, online or not: the first page of the members command (enough for the
// page's list; the server bounds it).
function loadRoster(conv, { more = false } = {}) {
  if (app.link.state !== State.CONNECTED) return;
  app.client
    .members(conv.name, { cursor: more ? conv.rosterCursor ?? undefined : undefined })
    .then(({ members, cursor }) => {
      const known = more ? conv.roster.filter((m) => !members.some((n) => n.user === m.user)) : [];
      conv.roster = [...known, ...members];
      conv.rosterCursor = cursor || null;
      for (const m of members) if (!app.presence.has(m.user)) app.presence.set(m.user, m.status);
      watchUsers(members.map((m) => m.user));
      if (conv.key === app.openKey) renderHeader();
    })
    .catch(() => {});
}

function startRoomEdit() {
  const conv = openConv();
  if (!conv || conv.kind !== "room") return;
  ui.roomTitleInput.value = conv.title;
  ui.roomTopicInput.value = conv.topic;
  ui.roomEditForm.hidden = false;
  ui.roomTitleInput.focus();
}

function saveRoomEdit() {
  const conv = openConv();
  ui.roomEditForm.hidden = true;
  if (!conv || conv.kind !== "room") return;
  const title = ui.roomTitleInput.value.trim();
  const topic = ui.roomTopicInput.value.trim();
  app.client
    .updateRoom(conv.name, { title, topic })
    .then((info) => onRoomChanged(info))
    .catch((err) => showNotice(`Could not change ${conv.name}: ${err.message}`));
}

// -- the room directory ---------------------------------------------------------------------------

const directory = { query: "", cursor: null };

function openDirectory() {
  ui.directoryQuery.value = "";
  ui.directoryList.replaceChildren();
  ui.directory.showModal();
  searchDirectory(false);
  ui.directoryQuery.focus();
}

function searchDirectory(more) {
  if (!more) {
    directory.query = ui.directoryQuery.value.trim();
    directory.cursor = null;
    ui.directoryList.replaceChildren();
  }
  const args = { query: directory.query || undefined, cursor: more ? directory.cursor : undefined };
  app.client
    .directory(args)
    .then(({ rooms, cursor }) => {
      directory.cursor = cursor || null;
      ui.directoryMore.hidden = !cursor;
      ui.directoryList.append(
        ...rooms.map((room) =>
          el("li", { "data-testid": "directory-room", "data-room": room.room },
            el("span", { class: "name", text: room.title || `# ${room.room}` }),
            el("span", { class: "conv-sub", text: `${room.topic || room.room} · ${room.members}` }),
            el("button", {
              type: "button",
              "data-testid": "directory-join",
              text: app.convs.has(roomKey(room.room)) ? "Open" : "Join",
              onclick: () => {
                ui.directory.close();
                joinRoom(room.room);
              },
            })),
        ),
      );
      if (!ui.directoryList.children.length) {
        ui.directoryList.append(el("li", { class: "placeholder", text: "No rooms found" }));
      }
    })
    .catch((err) => showNotice(err.message));
}

// "ann is typing…" under the open conversation, until their message or the indicator's end.
function renderTyping() {
  const conv = openConv();
  const now = Date.now();
  const users = conv ? app.typing.typing(conv.key, now) : [];
  let text = "";
  if (users.length === 1) text = `${users[0]} is typing…`;
  else if (users.length === 2) text = `${users[0]} and ${users[1]} are typing…`;
  else if (users.length > 2) text = `${users[0]}, ${users[1]} and ${users.length - 2} more are typing…`;
  ui.typing.textContent = text;
  ui.typing.dataset.users = users.join(" ");
  clearTimeout(app.typingTimer);
  const next = app.typing.nextExpiry(now);
  app.typingTimer = next === null ? null : setTimeout(renderTyping, next + 1);
}

function renderHistoryStatus(conv) {
  let text = "";
  if (conv.loading) text = "Loading earlier messages…";
  else if (conv.loaded && !conv.more && conv.messages.size) text = "Start of the conversation";
  else if (conv.loaded && !conv.more) text = "No messages yet";
  else if (conv.loaded) text = "Scroll up for earlier messages";
  ui.historyStatus.textContent = text;
}

function timeOf(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function bodyText(body) {
  if (typeof body === "string") return body;
  if (body instanceof Uint8Array) return `[${body.length} bytes]`;
  return JSON.stringify(body);
}

function statusOf(conv, item) {
  if (item.cid && !item.mid) {
    return item.failed ? ["failed", "Not sent", `Not sent: ${item.failed}`] : ["sending", "Sending…", "Sending"];
  }
  if (conv.kind !== "dm") return null;
  const receipt = app.receipts.get(item.mid);
  if (receipt === "read") return ["read", "✓✓ Read", "Read"];
  if (receipt === "delivered") return ["delivered", "✓✓", "Delivered"];
  return ["sent", "✓", "Sent"];
}

function messageElement(conv, item, { cache = app.rendered, inThread = false } = {}) {
  const mine = item.mid ? item.from === app.me : true;
  const key = item.mid ? `m:${item.mid}` : `p:${item.cid}`;
  const status = mine ? statusOf(conv, item) : null;
  const chips = JSON.stringify(item.reactions || []);
  const replies = summaryOf(item)?.count ?? "";
  const answered = isReply(item) && app.thread?.replies.get(item.reply_to)?.deleted ? "q" : "";
  const expanded = app.expanded.has(key) ? "e" : "";
  const sig = `${status ? status[0] : ""}|${item.edited ?? ""}|${item.deleted ? "x" : ""}|${chips}`
    + `|${replies}|${answered}|${expanded}`;
  const cached = cache.get(key);
  if (cached && cached.sig === sig) return cached.el;
  const root = isReply(item) ? item.thread : item.mid;
  const text = item.deleted ? "" : bodyText(item.body);
  const long = isLong(text);
  const mentionsMe = !mine && (item.mentions || []).includes(app.me);
  const node = el("li", {
      class: `message${mine ? " mine" : ""}${item.mid ? "" : " pending"}`
        + `${mentionsMe ? " mentions-me" : ""}`,
      "data-testid": "message",
      "data-mid": item.mid,
      "data-seq": item.seq,
      "data-cid": item.cid,
      "data-from": item.mid ? item.from : app.me,
    },
    inThread ? replyQuote(item) : null,
    el("div", { class: "meta" },
      mine ? null : el("span", { class: "author", text: item.from }),
      el("time", { text: timeOf(item.ts), datetime: new Date(item.ts).toISOString() }),
      item.edited && !item.deleted
        ? el("span", { class: "edited", "data-testid": "edited", text: "(edited)",
            title: `Edited ${new Date(item.edited).toLocaleString()}` })
        : null,
      item.mid && !item.deleted
        ? el("span", { class: "actions" },
            el("button", { type: "button", class: "link-button", "data-testid": "react-message",
              text: QUICK_REACTION, title: `React with ${QUICK_REACTION}`,
              "aria-label": `React with ${QUICK_REACTION}`,
              onclick: () => toggleReaction(item.mid, QUICK_REACTION, true) }),
            el("button", { type: "button", class: "link-button", "data-testid": "react-more",
              text: "React…", "aria-haspopup": "true", "aria-expanded": "false",
              title: "Pick a reaction",
              onclick: (event) => {
                const mine = (key) => (item.reactions || []).some((r) => r.key === key && r.me);
                openPicker(event.currentTarget, (key) => toggleReaction(item.mid, key, !mine(key)),
                  mine);
              } }),
            el("button", { type: "button", class: "link-button", "data-testid": "reply-message",
              text: "Reply", title: "Reply in a thread",
              onclick: () => openThread(conv, root, item.mid) }),
            mine
              ? el("button", { type: "button", class: "link-button", "data-testid": "edit-message",
                  text: "Edit", onclick: () => startEditing(item) })
              : null,
            mine
              ? el("button", { type: "button", class: "link-button",
                  "data-testid": "delete-message", text: "Delete",
                  onclick: () => deleteMessage(item.mid) })
              : null)
        : null),
    item.deleted
      ? el("div", { class: "bubble deleted", "data-testid": "message-body", "data-deleted": true,
          text: "Message deleted" })
      : el("div", {
          class: `bubble${long && !expanded ? " collapsed" : ""}`,
          "data-testid": "message-body",
          id: item.mid ? `body-${item.mid}` : undefined,
        }, ...renderText(text, app.me)),
    long && !item.deleted
      ? el("button", {
          type: "button",
          class: "link-button show-more",
          "data-testid": "show-more",
          "aria-expanded": expanded ? "true" : "false",
          "aria-controls": item.mid ? `body-${item.mid}` : undefined,
          text: expanded ? "Show less" : "Show more",
          onclick: () => {
            if (app.expanded.has(key)) app.expanded.delete(key);
            else app.expanded.add(key);
            if (inThread) renderThread();
            else renderMessages();
          },
        })
      : null,
    reactionChips(item),
    inThread ? null : threadLink(conv, item),
    status
      ? el("span", {
          class: "status",
          "data-testid": "msg-status",
          "data-status": status[0],
          text: status[1],
          "aria-label": status[2],
        })
      : null,
  );
  if (cached) readObserver.unobserve(cached.el);
  cache.set(key, { sig, el: node });
  if (conv.kind === "dm" && item.mid && !mine && !app.readSent.has(item.mid)) {
    if (!inThread) readObserver.observe(node);
    else if (document.visibilityState === "visible") sendReceipt(item.mid);
  }
  return node;
}

function renderMessages({ bottom = false, prepend = false } = {}) {
  const conv = openConv();
  if (!conv) return;
  const box = ui.messages;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < NEAR_BOTTOM_PX;
  // Replies are shown in their thread's panel; the root says how many there are.
  const stored = [...conv.messages.values()].filter((m) => !isReply(m)).sort((a, b) => a.seq - b.seq);
  const pending = [...conv.pending.values()].sort((a, b) => a.ts - b.ts);
  const items = [...stored, ...pending];
  const nodes = listRows(conv, items);
  const keep = new Set(items.map((item) => (item.mid ? `m:${item.mid}` : `p:${item.cid}`)));
  for (const key of [...app.rendered.keys()]) {
    if (!keep.has(key)) {
      readObserver.unobserve(app.rendered.get(key).el);
      app.rendered.delete(key);
    }
  }
  ui.messageList.replaceChildren(...nodes);
  renderHistoryStatus(conv);
  const divider = ui.messageList.querySelector('[data-testid="new-divider"]');
  if (bottom && divider && !conv.dividerShown) {
    // Opened with unread messages: start at the first of them.
    conv.dividerShown = true;
    box.scrollTop = Math.max(0, divider.offsetTop - box.offsetTop - NEAR_TOP_PX * 2);
  } else if (bottom || (atBottom && !prepend)) box.scrollTop = box.scrollHeight;
  else if (prepend) box.scrollTop = box.scrollHeight - fromBottom;
  renderJump();
}

/** The rows of the message list: messages (an author's run grouped under one name and time),
 * a separator where the day changes, and "New messages" above the first unread one. */
function listRows(conv, items) {
  const rows = [];
  let prev = null;
  let dividerPlaced = conv.divider === null;
  for (const item of items) {
    const from = item.mid ? item.from : app.me;
    const newDay = prev === null || startOfDay(prev.ts) !== startOfDay(item.ts);
    if (newDay) {
      rows.push(el("li", { class: "day", "data-testid": "day-separator" },
        el("span", { text: dayLabel(item.ts) })));
    }
    let divided = false;
    if (!dividerPlaced && item.mid && item.seq > conv.divider && from !== app.me) {
      rows.push(el("li", { class: "new-divider", "data-testid": "new-divider" },
        el("span", { text: "New messages" })));
      dividerPlaced = divided = true;
    }
    const node = messageElement(conv, item);
    const grouped = !newDay && !divided && prev !== null && prev.from === from
      && item.ts - prev.ts < GROUP_MS && !prev.deleted;
    node.classList.toggle("grouped", grouped);
    rows.push(node);
    prev = { ts: item.ts, from, deleted: item.deleted };
  }
  return rows;
}

/** "Jump to latest" while the view is more than half a screen above the newest message. */
function renderJump() {
  const box = ui.messages;
  ui.jump.hidden = box.scrollHeight - box.scrollTop - box.clientHeight <= box.clientHeight / 2;
}

// -- wiring ---------------------------------------------------------------------------------------

ui.signinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = ui.signinName.value.trim();
  if (name) signInByName(name);
});

ui.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  ui.signinError.textContent = "";
  const token = ui.signinToken.value.trim();
  ui.signinToken.value = "";
  if (token) signInWithToken(token);
});

ui.signout.addEventListener("click", signOut);
ui.notifyToggle.addEventListener("click", async () => {
  await notify.toggle().catch(() => null);
  renderNotify();
});
ui.membersMore.addEventListener("click", () => {
  const conv = openConv();
  if (conv && conv.kind === "room") loadRoster(conv, { more: true });
});
ui.retry.addEventListener("click", () => app.client?.connect().catch(() => {}));

ui.joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = ui.joinRoom.value.trim();
  if (!name) return;
  ui.joinRoom.value = "";
  joinRoom(name);
});

ui.dmForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const user = ui.dmUser.value.trim();
  if (!user) return;
  ui.dmUser.value = "";
  openDm(user);
});

ui.leave.addEventListener("click", () => {
  const conv = openConv();
  if (conv && conv.kind === "room") leaveRoom(conv);
});

ui.back.addEventListener("click", closeConversation);
ui.editRoom.addEventListener("click", startRoomEdit);
ui.roomEditCancel.addEventListener("click", () => {
  ui.roomEditForm.hidden = true;
});
ui.roomEditForm.addEventListener("submit", (event) => {
  event.preventDefault();
  saveRoomEdit();
});
ui.browseRooms.addEventListener("click", openDirectory);
ui.directoryForm.addEventListener("submit", (event) => {
  event.preventDefault();
  searchDirectory(false);
});
ui.directoryMore.addEventListener("click", () => searchDirectory(true));
ui.directoryClose.addEventListener("click", () => ui.directory.close());

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.input.value.trim();
  if (!text) return;
  ui.input.rows = 1;
  if (app.editing !== null) {
    saveEdit(app.editing, text);
    return;
  }
  ui.input.value = "";
  sendMessage(text);
});

ui.input.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && app.editing !== null) {
    event.preventDefault();
    stopEditing();
    return;
  }
  if (event.key === "ArrowUp" && !ui.input.value && app.editing === null) {
    const mine = lastOwnMessage(openConv());
    if (mine) {
      event.preventDefault();
      startEditing(mine);
    }
    return;
  }
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});

/** This user's newest message in `conv` that can still be edited (not deleted, not a reply). */
function lastOwnMessage(conv) {
  if (!conv) return null;
  let last = null;
  for (const msg of conv.messages.values()) {
    if (msg.from === app.me && !msg.deleted && !isReply(msg) && typeof msg.body === "string"
        && (last === null || msg.seq > last.seq)) last = msg;
  }
  return last;
}

// Escape closes what is open on top of the conversation: the room's edit form, the thread.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented || ui.directory.open) return;
  if (!ui.roomEditForm.hidden) {
    ui.roomEditForm.hidden = true;
    ui.editRoom.focus();
  } else if (app.thread) {
    closeThread();
    ui.input.focus();
  } else return;
  event.preventDefault();
});

ui.input.addEventListener("input", () => {
  ui.input.rows = Math.min(5, ui.input.value.split("\n").length);
  typed();
});

ui.threadClose.addEventListener("click", closeThread);

ui.threadReplyingCancel.addEventListener("click", () => {
  if (!app.thread) return;
  app.thread.replyTo = app.thread.root;
  renderThread();
});

ui.threadComposer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.threadInput.value.trim();
  if (!text) return;
  ui.threadInput.value = "";
  ui.threadInput.rows = 1;
  sendReply(text);
});

ui.threadInput.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    event.preventDefault();
    closeThread();
    ui.input.focus();
    return;
  }
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.threadComposer.requestSubmit();
  }
});

ui.threadInput.addEventListener("input", () => {
  ui.threadInput.rows = Math.min(5, ui.threadInput.value.split("\n").length);
});

ui.threadMessages.addEventListener("scroll", () => {
  if (app.thread && ui.threadMessages.scrollTop < NEAR_TOP_PX) loadThread(app.thread);
});

ui.jump.addEventListener("click", () => {
  ui.messages.scrollTop = ui.messages.scrollHeight;
  renderJump();
  ui.input.focus();
});

ui.messages.addEventListener("scroll", () => {
  renderJump();
  const conv = openConv();
  if (conv && ui.messages.scrollTop < NEAR_TOP_PX) loadOlder(conv);
});

document.addEventListener("visibilitychange", () => {
  const conv = openConv();
  if (document.visibilityState !== "visible" || !conv) return;
  markRead(conv);
  renderSidebar();
  flushReads();
});

NARROW.addEventListener("change", () => {
  ui.back.hidden = !(NARROW.matches && app.openKey);
});

startSignIn();
renderLink();
