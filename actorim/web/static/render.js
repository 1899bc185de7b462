// A message's text as DOM nodes: a small Markdown subset (bold, italic, code, code blocks,
// quotes), safe links and highlighted mentions. Nodes are built with textContent and
// setAttribute only, never from HTML strings, so whatever a message holds (script tags, event
// attributes) stays text; a link is made only for http:, https: and mailto: addresses.

// A body longer than this many characters or lines is shown collapsed, with "Show more".
export const COLLAPSE_CHARS = 1200;
export const COLLAPSE_LINES = 14;
// How deep emphasis may nest (**bold _italic_**): deeper markers stay as text.
const MAX_DEPTH = 3;
// The schemes a link may have; anything else (javascript:, data:, vbscript:) stays text.
const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:"]);

// Characters of a user id, as the server finds mentions (actorim/domain/markers.py).
const ID = "A-Za-z0-9_.:@\\-";
const TRAILING = /[.:\-@]+$/;

// One alternative per inline form, tried left to right; the first to match at a place wins.
const INLINE = new RegExp(
  [
    "(`+)([^`\\n][\\s\\S]*?)\\1(?!`)", // 1, 2: code
    "\\*\\*(?=\\S)([\\s\\S]*?\\S)\\*\\*", // 3: bold
    "(?<![\\w*])\\*(?=[^\\s*])([\\s\\S]*?[^\\s*])\\*(?![\\w*])", // 4: italic
    "(?<![\\w_])_(?=[^\\s_])([\\s\\S]*?[^\\s_])_(?![\\w_])", // 5: italic
    "\\[([^\\]\\n]{1,300})\\]\\(([^()\\s]{1,2000})\\)", // 6, 7: [text](url)
    "\\b((?:https?:\\/\\/|mailto:)[^\\s<>\"]*[^\\s<>\".,:;'!?)\\]])", // 8: a bare address
    `(?<![${ID}])@([${ID}]+)`, // 9: a mention
  ].join("|"),
  "g",
);

/** A message's text split into blocks: `{type: "code", text}`, `{type: "quote", text}` and
 * `{type: "para", text}` (paragraphs keep their line breaks). Pure. */
export function parseBlocks(text) {
  const blocks = [];
  const lines = text.split("\n");
  let para = [];
  const flush = () => {
    if (para.length) blocks.push({ type: "para", text: para.join("\n") });
    para = [];
  };
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i];
    if (line.trimStart().startsWith("```")) {
      flush();
      const code = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith("```")) code.push(lines[i++]);
      blocks.push({ type: "code", text: code.join("\n") });
    } else if (line.startsWith(">")) {
      flush();
      const quoted = [];
      while (i < lines.length && lines[i].startsWith(">")) quoted.push(lines[i++].replace(/^> ?/, ""));
      i -= 1;
      blocks.push({ type: "quote", text: quoted.join("\n") });
    } else {
      para.push(line);
    }
  }
  flush();
  return blocks;
}

/** `url` as a link target when its scheme is safe, else null. */
export function safeHref(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  return SAFE_SCHEMES.has(parsed.protocol) ? parsed.href : null;
}

function link(href, label, depth, me) {
  const safe = safeHref(href);
  if (safe === null) return null;
  const a = document.createElement("a");
  a.href = safe;
  a.rel = "noopener noreferrer";
  a.target = "_blank";
  a.append(...(label === null ? [document.createTextNode(href)] : inline(label, depth + 1, me)));
  return a;
}

function wrap(tag, text, depth, me) {
  const node = document.createElement(tag);
  node.append(...inline(text, depth + 1, me));
  return node;
}

/** The inline nodes of `text` (no blocks), with mentions of `me` marked. */
export function inline(text, depth = 0, me = null) {
  if (depth >= MAX_DEPTH) return [document.createTextNode(text)];
  const out = [];
  let last = 0;
  const push = (plain) => {
    if (!plain) return;
    // Line breaks inside a paragraph stay line breaks.
    plain.split("\n").forEach((part, n) => {
      if (n > 0) out.push(document.createElement("br"));
      if (part) out.push(document.createTextNode(part));
    });
  };
  for (const m of text.matchAll(INLINE)) {
    let node = null;
    let consumed = m[0];
    if (m[2] !== undefined) {
      node = document.createElement("code");
      node.textContent = m[2];
    } else if (m[3] !== undefined) node = wrap("strong", m[3], depth, me);
    else if (m[4] !== undefined) node = wrap("em", m[4], depth, me);
    else if (m[5] !== undefined) node = wrap("em", m[5], depth, me);
    else if (m[6] !== undefined) node = link(m[7], m[6], depth, me);
    else if (m[8] !== undefined) node = link(m[8], null, depth, me);
    else if (m[9] !== undefined) {
      const user = m[9].replace(TRAILING, "");
      if (user) {
        consumed = `@${user}`;
        node = document.createElement("span");
        node.className = user === me ? "mention me" : "mention";
        node.dataset.testid = "mention";
        node.dataset.user = user;
        node.textContent = consumed;
      }
    }
    if (node === null) continue; // an unsafe link: its text stays text
    push(text.slice(last, m.index));
    out.push(node);
    last = m.index + consumed.length; // a mention's trailing dots stay text
  }
  push(text.slice(last));
  return out;
}

/** The nodes of a message's text: its blocks, each with its inline forms. */
export function renderText(text, me = null) {
  return parseBlocks(text).map((block) => {
    if (block.type === "code") {
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      code.textContent = block.text;
      pre.append(code);
      return pre;
    }
    const node = document.createElement(block.type === "quote" ? "blockquote" : "p");
    node.append(...inline(block.text, 0, me));
    return node;
  });
}

/** Whether `text` is long enough to be shown collapsed at first. */
export function isLong(text) {
  if (text.length > COLLAPSE_CHARS) return true;
  let lines = 1;
  for (const ch of text) if (ch === "\n" && ++lines > COLLAPSE_LINES) return true;
  return false;
}

/** "Today", "Yesterday" or the date, for a separator above `ts`'s messages (`now`: the clock). */
export function dayLabel(ts, now = Date.now()) {
  const day = startOfDay(ts);
  const today = startOfDay(now);
  if (day === today) return "Today";
  if (day === startOfDay(today - 12 * 3600 * 1000)) return "Yesterday";
  const date = new Date(ts);
  const sameYear = date.getFullYear() === new Date(now).getFullYear();
  return date.toLocaleDateString([], {
    weekday: sameYear ? "long" : undefined,
    day: "numeric",
    month: "long",
    year: sameYear ? undefined : "numeric",
  });
}

/** Midnight (local time) of the day of `ts`, in ms. */
export function startOfDay(ts) {
  const date = new Date(ts);
  date.setHours(0, 0, 0, 0);
  return date.getTime();
}
