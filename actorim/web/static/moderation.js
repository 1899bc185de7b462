// Moderation on the chat page (docs/moderation.md): a moderator or owner of the open room gets
// Kick, Mute and Delete beside other users' messages, Unmute and Ban beside other members in
// the member list, and "Unban…" after it (a banned user is no longer a member, so they are named
// instead); a user a moderator acted on is told what happened, by whom and why.
//
// The module keeps to itself: it learns this user's roles from join replies and `moderation`
// events, and adds its buttons to the messages and members the page renders (watching both
// lists), so the page's own rendering does not know about it.

// How long a mute from the page lasts, in seconds.
export const MUTE_SECONDS = 10 * 60;

const MODERATING = new Set(["owner", "moderator"]);

let installed = null; // the page's current installation (one per signed-in client)

/** What a `moderation` event tells the user it is about, in one sentence. */
export function describe(event) {
  const { action, room, by } = event;
  const until = event.until === null || event.until === undefined
    ? ""
    : ` until ${new Date(event.until).toLocaleString()}`;
  const text = {
    kick: `You were removed from ${room} by ${by}`,
    ban: `You were banned from ${room} by ${by}${until}`,
    unban: `You may join ${room} again`,
    mute: `You were muted in ${room} by ${by}${until}`,
    unmute: `You may write in ${room} again`,
    delete: `Your message in ${room} was deleted by ${by}`,
    role: `You are now ${event.role === "member" ? "a member" : `the ${event.role}`} of ${room}`,
  }[action] ?? `${by} moderated you in ${room}`;
  return event.reason ? `${text}: ${event.reason}` : text;
}

/**
 * Start moderation for a signed-in page: `client` (an ActorimClient), `me` (this user),
 * `currentRoom()` (the name of the open room, or null), `showNotice(text)`, `messages` (the
 * message list element) and `members` (the member list element). A second call (after signing
 * in again) replaces the first.
 */
export function installModeration({ client, me, currentRoom, showNotice, messages, members }) {
  installed?.observer.disconnect();
  const roles = new Map(); // room -> this user's role there, when owner or moderator
  const decorate = () => {
    const room = currentRoom();
    decorateMessages(messages, roles, me, room, act);
    decorateMembers(members, roles, me, room, act);
  };
  const observer = new MutationObserver(decorate);
  installed = { observer };

  // Ask for the reason (shown to the user), act, and say so: `done` on success, the server's
  // refusal (outranked, not_moderator, ...) otherwise.
  function act(action, room, args, question, done) {
    const reason = window.prompt(question, "");
    if (reason === null) return;
    client.moderate(room, action, { ...args, reason })
      .then(() => done && showNotice(done))
      .catch((err) => showNotice(err.message));
  }

  client.on("joined", (reply) => {
    if (MODERATING.has(reply.role)) roles.set(reply.room, reply.role);
    else roles.delete(reply.room);
    decorate();
  });
  client.on("moderation", (event) => {
    if (event.action === "role") {
      if (MODERATING.has(event.role)) roles.set(event.room, event.role);
      else roles.delete(event.room);
      decorate();
    }
    showNotice(describe(event));
  });
  observer.observe(messages, { childList: true, subtree: true });
  observer.observe(members, { childList: true });
}

function button(testid, text, onclick, label) {
  const node = document.createElement("button");
  node.type = "button";
  node.className = "link-button";
  node.dataset.testid = testid;
  node.dataset.moderation = "";
  node.textContent = text;
  if (label) node.setAttribute("aria-label", label);
  node.addEventListener("click", onclick);
  return node;
}

/** Add Unmute and Ban to the other members of `room`, and "Unban…" after them, when this user
 * moderates it; take them away when not. Idempotent: it runs on every change of the list,
 * its own additions included. */
function decorateMembers(members, roles, me, room, act) {
  const moderating = room !== null && roles.has(room);
  for (const item of members.querySelectorAll('[data-testid="member"]')) {
    const user = item.dataset.user;
    const wanted = moderating && user && user !== me;
    const present = item.querySelector("[data-moderation]");
    if (!wanted) {
      for (const old of item.querySelectorAll("[data-moderation]")) old.remove();
      continue;
    }
    if (present) continue;
    item.append(
      button("moderate-unmute", "Unmute", () =>
        act("unmute", room, { user }, `Let ${user} write in ${room} again? Note (shown to ${user}):`,
          `${user} may write in ${room} again`), `Unmute ${user}`),
      button("moderate-ban", "Ban", () =>
        act("ban", room, { user }, `Ban ${user} from ${room} until unbanned? Reason:`,
          `${user} is banned from ${room}`), `Ban ${user}`),
    );
  }
  const unban = members.querySelector('[data-testid="moderate-unban-item"]');
  if (!moderating) {
    unban?.remove();
    return;
  }
  if (unban && unban === members.lastElementChild) return;
  unban?.remove();
  const item = document.createElement("li");
  item.dataset.testid = "moderate-unban-item";
  item.dataset.moderation = "";
  item.append(button("moderate-unban", "Unban…", () => {
    const user = window.prompt(`Unban which user from ${room}?`, "")?.trim();
    if (!user) return;
    act("unban", room, { user }, `Let ${user} join ${room} again? Note (shown to ${user}):`,
      `${user} may join ${room} again`);
  }, `Unban a user from ${room}`));
  members.append(item);
}

/** Add the moderator's buttons to other users' messages in `room` when this user moderates
 * it, and take them away when not. */
function decorateMessages(messages, roles, me, room, act) {
  const moderating = room !== null && roles.has(room);
  for (const item of messages.querySelectorAll('[data-testid="message"]')) {
    const actions = item.querySelector(".actions");
    const present = item.querySelector("[data-moderation]");
    const author = item.dataset.from;
    const wanted = moderating && actions && item.dataset.mid && author && author !== me;
    if (!wanted) {
      for (const old of item.querySelectorAll("[data-moderation]")) old.remove();
      continue;
    }
    if (present) continue;
    const mid = item.dataset.mid;
    actions.append(
      button("moderate-delete", "Remove", () =>
        act("delete", room, { mid }, `Delete ${author}'s message? Reason (shown to ${author}):`)),
      button("moderate-mute", "Mute", () =>
        act("mute", room, { user: author, seconds: MUTE_SECONDS },
          `Mute ${author} in ${room} for ${MUTE_SECONDS / 60} minutes? Reason:`)),
      button("moderate-kick", "Kick", () =>
        act("kick", room, { user: author }, `Remove ${author} from ${room}? Reason:`)),
    );
  }
}
