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

  return { counts, paint, outline };
})();
