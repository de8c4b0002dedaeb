// Pure text helpers: names, times, IRC formatting, links and mentions.
// No DOM here: the views turn the segments into nodes with textContent.

/** Case-fold a name as the server does (IRC CASEMAPPING=ascii). */
export function fold(name) {
  const s = String(name);
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(s) ? s.toLowerCase() : s.toLocaleLowerCase("und");
}

const ACCOUNT_RE = /^[A-Za-z_][A-Za-z0-9_\-[\]\\^{}|`]{0,31}$/;
const ROOM_RE = /^#[^\s,:\x00-\x1f\x7f]{1,49}$/;

export function isAccountName(name) {
  return ACCOUNT_RE.test(String(name));
}

export function isRoomName(name) {
  return ROOM_RE.test(String(name));
}

/** "#Lobby" stays; "lobby" becomes "#lobby" (what people type in a join box). */
export function roomName(text) {
  const name = String(text).trim();
  return name.startsWith("#") ? name : "#" + name;
}

// IRC formatting: bold, colour (with its digits), hex colour, reset, monospace,
// reverse, italic, strikethrough, underline. IRC users' messages look like
// everyone else's once these are gone.
// eslint-disable-next-line no-control-regex
const IRC_FORMAT_RE = /\x03(?:\d{1,2}(?:,\d{1,2})?)?|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]/g;

export function stripFormatting(text) {
  return String(text).replace(IRC_FORMAT_RE, "");
}

/** `{text, action}`: "\x01ACTION waves\x01" is an action ("* alice waves");
 * other CTCP markers are dropped, IRC formatting removed. */
export function messageBody(text) {
  const raw = String(text ?? "");
  if (raw.startsWith("\x01ACTION ") && raw.length > 9) {
    return { text: stripFormatting(raw.slice(8).replace(/\x01$/, "")), action: true };
  }
  return { text: stripFormatting(raw.replace(/\x01/g, "")), action: false };
}

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = ".,;:!?)]}'\"";

/** Drop the punctuation that ends a sentence rather than the URL, but keep a
 * closing bracket the URL opened: "(see http://x/a_(b))." -> "http://x/a_(b)". */
function trimUrl(url) {
  let end = url.length;
  while (end > 0 && TRAILING.includes(url[end - 1])) {
    const ch = url[end - 1];
    if (ch === ")" || ch === "]" || ch === "}") {
      const open = { ")": "(", "]": "[", "}": "{" }[ch];
      const body = url.slice(0, end);
      if (body.split(open).length > body.split(ch).length - 1) break;
    }
    end -= 1;
  }
  return url.slice(0, end);
}

/** A URL the page may link to: http or https only, well formed. */
export function safeUrl(candidate) {
  try {
    const url = new URL(candidate);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function nameChar(ch) {
  return ch !== undefined && /[A-Za-z0-9_\-[\]\\^{}|`]/.test(ch);
}

/** Where *me* occurs in *text* as a whole name (not inside a longer name),
 * case-insensitively: a list of [start, end). */
export function mentionRanges(text, me) {
  if (!me) return [];
  const hay = fold(text);
  const needle = fold(me);
  const out = [];
  let from = 0;
  for (;;) {
    const at = hay.indexOf(needle, from);
    if (at < 0) break;
    const end = at + needle.length;
    if (!nameChar(text[at - 1]) && !nameChar(text[end])) out.push([at, end]);
    from = end;
  }
  return out;
}

export function mentions(text, me) {
  return mentionRanges(messageBody(text).text, me).length > 0;
}

function splitMentions(text, me, out) {
  let last = 0;
  for (const [start, end] of mentionRanges(text, me)) {
    if (start > last) out.push({ type: "text", value: text.slice(last, start) });
    out.push({ type: "mention", value: text.slice(start, end) });
    last = end;
  }
  if (last < text.length) out.push({ type: "text", value: text.slice(last) });
}

/** A message's text as segments: `text`, `link` (with a safe `href`) and
 * `mention` (the reader's own name). */
export function segments(text, me) {
  const out = [];
  let last = 0;
  for (const match of String(text).matchAll(URL_RE)) {
    const url = trimUrl(match[0]);
    const href = safeUrl(url);
    if (!href) continue;
    if (match.index > last) splitMentions(text.slice(last, match.index), me, out);
    out.push({ type: "link", value: url, href });
    last = match.index + url.length;
  }
  if (last < text.length) splitMentions(text.slice(last), me, out);
  return out;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** "14:05" in local time; with *full*, the date too when it is not *today*. */
export function clock(ts, { full = false, now = new Date() } = {}) {
  const when = new Date(ts);
  if (Number.isNaN(when.getTime())) return "";
  const hm = `${pad(when.getHours())}:${pad(when.getMinutes())}`;
  if (full && !sameDay(when, now)) return `${dayKey(when)} ${hm}`;
  return hm;
}

/** "2026-11-21": the local day a timestamp falls on. */
export function dayKey(ts) {
  const when = ts instanceof Date ? ts : new Date(ts);
  return `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}`;
}

function sameDay(a, b) {
  return dayKey(a) === dayKey(b);
}

/** "Today", "Yesterday" or the date, for the separators between days. */
export function dayLabel(ts, now = new Date()) {
  const key = dayKey(ts);
  if (key === dayKey(now)) return "Today";
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (key === dayKey(yesterday)) return "Yesterday";
  return new Date(ts).toLocaleDateString(undefined, {
    weekday: "long", year: "numeric", month: "long", day: "numeric",
  });
}

/** A device label for this browser: "Chromium on Linux". */
export function deviceLabel(userAgent) {
  const ua = String(userAgent || "");
  const browser = /Edg\//.test(ua) ? "Edge"
    : /OPR\//.test(ua) ? "Opera"
    : /Firefox\//.test(ua) ? "Firefox"
    : /Chromium\//.test(ua) ? "Chromium"
    : /Chrome\//.test(ua) ? "Chrome"
    : /Safari\//.test(ua) ? "Safari"
    : "A browser";
  const os = /Android/.test(ua) ? "Android"
    : /iPhone|iPad|iPod/.test(ua) ? "iOS"
    : /Windows/.test(ua) ? "Windows"
    : /Mac OS X|Macintosh/.test(ua) ? "macOS"
    : /CrOS/.test(ua) ? "ChromeOS"
    : /Linux/.test(ua) ? "Linux"
    : "";
  return os ? `${browser} on ${os}` : browser;
}
