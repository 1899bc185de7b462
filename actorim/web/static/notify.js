// Desktop notifications for direct messages and mentions, only once the person asked for them
// with the button (a page never asks on load: browsers hold that against it, and people too).

// Where the choice is kept, per browser: "on" after the person turned notifications on.
const CHOICE_KEY = "actorim.notify";
// A notification shows at most this much of the message.
const PREVIEW_CHARS = 140;

export function supported() {
  return typeof window.Notification === "function";
}

/** Whether notifications are on: the browser allows them and the person turned them on here. */
export function enabled() {
  return supported() && Notification.permission === "granted"
    && localStorage.getItem(CHOICE_KEY) === "on";
}

/** The button's state: "unsupported", "blocked" (the browser refuses), "on" or "off". */
export function buttonState() {
  if (!supported()) return "unsupported";
  if (Notification.permission === "denied") return "blocked";
  return enabled() ? "on" : "off";
}

/** Turn notifications on (asking the browser if it has not been asked) or off. */
export async function toggle() {
  if (enabled()) {
    localStorage.removeItem(CHOICE_KEY);
    return buttonState();
  }
  const permission = Notification.permission === "granted"
    ? "granted"
    : await Notification.requestPermission();
  if (permission === "granted") localStorage.setItem(CHOICE_KEY, "on");
  return buttonState();
}

/** Show `title` and the start of `text`; one per conversation (`tag`) at a time; a click
 * focuses the page and calls `onClick`. */
export function show(title, text, tag, onClick) {
  if (!enabled()) return null;
  const preview = text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS - 1)}…` : text;
  const note = new Notification(title, { body: preview, tag });
  note.onclick = () => {
    window.focus();
    onClick();
    note.close();
  };
  return note;
}
