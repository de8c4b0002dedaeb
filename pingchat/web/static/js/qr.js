// QR codes (for the authenticator app's otpauth:// URI), drawn as SVG with the
// vendored qrcode-generator, which is loaded only when a code is needed.

/** The QR matrix of *text* (UTF-8, error correction M): rows of booleans. */
export function qrMatrix(qrcode, text) {
  const qr = qrcode(0, "M");
  // The library's default byte mode reads one byte per char: give it UTF-8.
  let bytes = "";
  for (const b of new TextEncoder().encode(text)) bytes += String.fromCharCode(b);
  qr.addData(bytes, "Byte");
  qr.make();
  const n = qr.getModuleCount();
  const rows = [];
  for (let r = 0; r < n; r++) {
    const row = [];
    for (let c = 0; c < n; c++) row.push(qr.isDark(r, c));
    rows.push(row);
  }
  return rows;
}

/** An SVG path ("d") with one unit square per dark module, offset by *margin*. */
export function qrPath(matrix, margin = 4) {
  const parts = [];
  matrix.forEach((row, r) => {
    row.forEach((dark, c) => {
      if (dark) parts.push(`M${c + margin} ${r + margin}h1v1h-1z`);
    });
  });
  return parts.join("");
}

let loading = null;

/** Load vendor/qrcode.js once (a classic script: it defines `qrcode`). */
export function loadQrLibrary(base = new URL("../vendor/qrcode.js", import.meta.url)) {
  if (globalThis.qrcode) return Promise.resolve(globalThis.qrcode);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = String(base);
      script.onload = () => (globalThis.qrcode ? resolve(globalThis.qrcode) : reject(new Error("the QR library did not load")));
      script.onerror = () => {
        loading = null;
        reject(new Error("the QR library could not be loaded"));
      };
      document.head.append(script);
    });
  }
  return loading;
}
