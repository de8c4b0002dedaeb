// Browser notifications for mentions and direct messages while the tab is
// hidden: off until the user turns them on (and the browser allows them).

const PREF = "pingchat.notifications";

/** Whether an incoming message deserves a notification. */
export function shouldNotify({ enabled, hidden, conv, item }) {
  if (!enabled || !hidden || item.mine || item.offline) return false;
  return conv.kind === "dm" || item.mention;
}

export class Notifier {
  constructor({ Notification, storage, document }) {
    this.Notification = Notification || null;
    this.storage = storage;
    this.document = document;
  }

  get supported() {
    return this.Notification !== null;
  }

  get permission() {
    return this.supported ? this.Notification.permission : "denied";
  }

  get enabled() {
    try {
      return this.supported && this.permission === "granted" && this.storage.getItem(PREF) === "on";
    } catch {
      return false;
    }
  }

  async enable() {
    if (!this.supported) return false;
    let permission = this.permission;
    if (permission === "default") permission = await this.Notification.requestPermission();
    if (permission !== "granted") return false;
    try {
      this.storage.setItem(PREF, "on");
    } catch {
      return false;
    }
    return true;
  }

  disable() {
    try {
      this.storage.removeItem(PREF);
    } catch {
      // nothing stored
    }
  }

  /** Show a notification for *item* in *conv* if it deserves one; *open*
   * brings the conversation up when the notification is clicked. */
  maybe(conv, item, open) {
    if (!shouldNotify({ enabled: this.enabled, hidden: this.document.hidden, conv, item })) return null;
    const title = conv.kind === "dm" ? `${item.from} (direct message)` : `${item.from} in ${conv.name}`;
    // An end-to-end encrypted message stays out of the system's notification
    // centre: only that one came.
    const body = item.encrypted ? "New encrypted message" : (item.action ? `* ${item.from} ${item.text}` : item.text);
    try {
      const n = new this.Notification(title, { body: body.slice(0, 200), tag: conv.key });
      n.onclick = () => {
        open();
        n.close();
      };
      return n;
    } catch {
      return null; // some mobile browsers only notify from a service worker
    }
  }
}
