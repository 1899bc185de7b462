// The reaction picker: a small group of buttons under a message's "React" button, one per
// reaction offered; arrow keys move between them, Escape closes it and gives the focus back.

/** The reactions offered (any other key still shows and counts when someone else uses it). */
export const REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "👀"];

/** Open the picker after `button` (closing one already open there); `onPick(key)` on a choice.
 * `mine(key)`: whether this user already reacted with `key` (the choice then takes it back). */
export function openPicker(button, onPick, mine) {
  const open = button.parentElement.querySelector(".picker");
  if (open) {
    close(button, open);
    return;
  }
  const picker = document.createElement("div");
  picker.className = "picker";
  picker.setAttribute("role", "group");
  picker.setAttribute("aria-label", "Pick a reaction");
  picker.dataset.testid = "reaction-picker";
  for (const key of REACTIONS) {
    const choice = document.createElement("button");
    choice.type = "button";
    choice.className = `reaction${mine(key) ? " me" : ""}`;
    choice.dataset.testid = "react-choice";
    choice.dataset.key = key;
    choice.textContent = key;
    choice.setAttribute("aria-label", mine(key) ? `Remove your ${key}` : `React with ${key}`);
    choice.addEventListener("click", () => {
      close(button, picker);
      onPick(key);
    });
    picker.append(choice);
  }
  picker.addEventListener("keydown", (event) => {
    const choices = [...picker.querySelectorAll("button")];
    const at = choices.indexOf(document.activeElement);
    if (event.key === "Escape") {
      event.preventDefault();
      close(button, picker);
    } else if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      event.preventDefault();
      const step = event.key === "ArrowRight" ? 1 : choices.length - 1;
      choices[(at + step) % choices.length].focus();
    }
  });
  button.after(picker);
  button.setAttribute("aria-expanded", "true");
  picker.querySelector("button").focus();
}

function close(button, picker) {
  picker.remove();
  button.setAttribute("aria-expanded", "false");
  button.focus();
}
