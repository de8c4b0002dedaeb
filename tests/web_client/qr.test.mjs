import assert from "node:assert/strict";
import { test } from "node:test";
import { js, loadQrcode } from "./helpers.mjs";

const { qrMatrix, qrPath } = await import(js("qr.js"));
const qrcode = loadQrcode();

function finder(matrix, top, left) {
  // A finder pattern: a dark 7x7 ring, a light ring inside it, a dark 3x3 centre.
  for (let r = 0; r < 7; r++) {
    for (let c = 0; c < 7; c++) {
      const ring = r === 0 || r === 6 || c === 0 || c === 6;
      const centre = r >= 2 && r <= 4 && c >= 2 && c <= 4;
      if (matrix[top + r][left + c] !== (ring || centre)) return false;
    }
  }
  return true;
}

test("an otpauth URI becomes a square QR matrix with its three finder patterns", () => {
  const uri = "otpauth://totp/pingchat:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=pingchat";
  const m = qrMatrix(qrcode, uri);
  const n = m.length;
  assert.ok(n >= 21 && (n - 17) % 4 === 0, `size ${n}`);
  assert.ok(m.every((row) => row.length === n));
  assert.ok(finder(m, 0, 0) && finder(m, 0, n - 7) && finder(m, n - 7, 0));
});

test("non-ASCII text is encoded as UTF-8 bytes", () => {
  const ascii = qrMatrix(qrcode, "x".repeat(30));
  const utf8 = qrMatrix(qrcode, "é".repeat(30)); // 60 bytes: a larger symbol
  assert.ok(utf8.length > ascii.length);
});

test("the SVG path has one square per dark module, inside the quiet zone", () => {
  const m = [[true, false], [false, true]];
  assert.equal(qrPath(m, 4), "M4 4h1v1h-1zM5 5h1v1h-1z");
});
