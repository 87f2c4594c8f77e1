// COCO run-length encoding helpers (the compressed string form of pycocotools).
"use strict";

const RLE = (() => {
  // Decode the compressed counts string into run lengths (alternating 0s and 1s, column-major).
  function counts(str) {
    const out = [];
    let p = 0;
    while (p < str.length) {
      let x = 0, k = 0, more = 1, c = 0;
      while (more) {
        c = str.charCodeAt(p) - 48;
        x |= (c & 0x1f) << (5 * k);
        more = c & 0x20;
        p++; k++;
        if (!more && (c & 0x10)) x |= -1 << (5 * k);
      }
      if (out.length > 2) x += out[out.length - 2];
      out.push(x);
    }
    return out;
  }

  // Paint the mask pixels of an RLE into RGBA data (row-major, width w) with one colour.
  function paint(rle, data, w, rgba) {
    const h = rle.size[0];
    const runs = counts(rle.counts);
    let idx = 0;
    for (let i = 0; i < runs.length; i++) {
      const n = runs[i];
      if (i % 2 === 1) {
        for (let j = idx; j < idx + n; j++) {
          const x = Math.floor(j / h), y = j - x * h;  // column-major index
          const o = (y * w + x) * 4;
          data[o] = rgba[0]; data[o + 1] = rgba[1]; data[o + 2] = rgba[2]; data[o + 3] = rgba[3];
        }
      }
      idx += n;
    }
  }

  // Outline: mask pixels whose right or lower neighbour is outside the mask.
  function outline(rle, data, w, rgba) {
    const [h] = rle.size;
    const inside = new Uint8Array(w * h);
    const runs = counts(rle.counts);
    let idx = 0;
    for (let i = 0; i < runs.length; i++) {
      if (i % 2 === 1) {
        for (let j = idx; j < idx + runs[i]; j++) {
          const x = Math.floor(j / h), y = j - x * h;
          inside[y * w + x] = 1;
        }
      }
      idx += runs[i];
    }
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = inside[y * w + x];
        const r = x + 1 < w ? inside[y * w + x + 1] : 0;
        const d = y + 1 < h ? inside[(y + 1) * w + x] : 0;
        const l = x > 0 ? inside[y * w + x - 1] : 0;
        const u = y > 0 ? inside[(y - 1) * w + x] : 0;
        if (v && !(r && d && l && u)) {
          const o = (y * w + x) * 4;
          data[o] = rgba[0]; data[o + 1] = rgba[1]; data[o + 2] = rgba[2]; data[o + 3] = rgba[3];
        }
      }
    }
  }

  // Row-major 0/1 mask (width w, height h) -> COCO compressed RLE {size: [h, w], counts}.
  function encode(mask, w, h) {
    const cnts = [];
    let prev = 0, run = 0;
    for (let x = 0; x < w; x++) {
      for (let y = 0; y < h; y++) {  // column-major, as pycocotools
        const v = mask[y * w + x];
        if (v !== prev) { cnts.push(run); run = 0; prev = v; }
        run++;
      }
    }
    cnts.push(run);
    let s = "";
    for (let i = 0; i < cnts.length; i++) {
      let x = cnts[i];
      if (i > 2) x -= cnts[i - 2];
      let more = 1;
      while (more) {
        let c = x & 0x1f;
        x >>= 5;
        more = (c & 0x10) ? x !== -1 : x !== 0;
        if (more) c |= 0x20;
        s += String.fromCharCode(c + 48);
      }
    }
    return { size: [h, w], counts: s };
  }

  // Pixel count and XYWH box of an RLE.
  function stats(rle) {
    const h = rle.size[0];
    const runs = counts(rle.counts);
    let idx = 0, area = 0, x0 = Infinity, y0 = Infinity, x1 = -1, y1 = -1;
    for (let i = 0; i < runs.length; i++) {
      const n = runs[i];
      if (i % 2 === 1 && n > 0) {
        const a = idx, b = idx + n - 1;
        const ax = Math.floor(a / h), bx = Math.floor(b / h);
        area += n;
        x0 = Math.min(x0, ax); x1 = Math.max(x1, bx);
        if (ax === bx) { y0 = Math.min(y0, a - ax * h); y1 = Math.max(y1, b - bx * h); }
        else { y0 = 0; y1 = h - 1; }  // a run across columns touches the top and the bottom
      }
      idx += n;
    }
    return { area, bbox: area ? [x0, y0, x1 - x0 + 1, y1 - y0 + 1] : [0, 0, 0, 0] };
  }

  return { counts, paint, outline, encode, stats };
})();
