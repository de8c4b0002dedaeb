// What one can do to a message in the conversation view: delete it, for
// everyone. A button on each message the user may delete (their own; any in
// a room they operate; any at all for a server operator), a confirmation,
// then `message.delete`. Keyboard: the button is in the tab order, and shows
// whenever its message has the focus or the pointer.

import { confirmDialog } from "./dialog.js";
import { h, icon } from "./dom.js";

/** The action buttons of *item*, or null when the user may do nothing to it. */
export function messageActions(client, conv, item, confirm = confirmDialog) {
  if (!client.canDelete(conv, item)) return null;
  const whose = item.mine ? "your message" : `the message from ${item.from}`;
  return h("span", { class: "msg-actions" },
    h("button", {
      type: "button", class: "icon-button small msg-delete", title: "Delete for everyone",
      "aria-label": `Delete ${whose}`,
      on: { click: () => deleteMessage(client, conv, item, confirm) },
    }, icon("trash")));
}

/** Ask, then delete; a refusal from the server shows as a toast. Resolves
 * true when the message was deleted. */
export async function deleteMessage(client, conv, item, confirm = confirmDialog) {
  const whose = item.mine ? "your message" : `this message from ${item.from}`;
  const ok = await confirm("Delete message", `Delete ${whose} for everyone in ${conv.title}? It cannot be brought back.`,
    { confirm: "Delete", danger: true });
  if (!ok) return false;
  try {
    await client.deleteMessage(conv, item);
    return true;
  } catch (e) {
    client.emit("toast", `Could not delete the message: ${e.message}`, "error");
    return false;
  }
}

/** How a deleted message reads: who deleted it (when not its author), and why. */
export function deletedText(item) {
  let text = "message deleted";
  if (item.deletedBy && item.deletedBy !== item.from) text += ` by ${item.deletedBy}`;
  if (item.deletedReason) text += ` (${item.deletedReason})`;
  return text;
}
