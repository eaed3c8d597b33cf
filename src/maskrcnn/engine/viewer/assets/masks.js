// COCO's masks in the browser: compressed RLE text decoded and painted into a canvas at any scale.
// Used by viewer.js; window.MaskrcnnMasks = { decodeRle, maskCanvas }.
"use strict";

(function () {
  // COCO's compressed RLE text (pycocotools' rleToString) to run lengths: 5 bits a character, a
  // continuation bit, the sign in the last character, and from the third run on a difference to the
  // run two before.
  function decodeRle(text) {
    const counts = [];
    let p = 0;
    while (p < text.length) {
      let x = 0, k = 0, more = 1;
      while (more) {
        const c = text.charCodeAt(p) - 48;
        x |= (c & 0x1f) << (5 * k);
        more = c & 0x20;
        p++;
        k++;
        if (!more && c & 0x10) x |= -1 << (5 * k);
      }
      if (counts.length > 2) x += counts[counts.length - 2];
      counts.push(x);
    }
    return counts;
  }

  // Paint a mask (runs over the image's pixels in column order, as COCO stores them) at `scale` into a
  // width x height RGBA canvas, and return it.
  function maskCanvas(text, imageHeight, scale, width, height, color) {
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    const pixels = ctx.createImageData(width, height);
    const data = pixels.data;
    const counts = decodeRle(text);
    let position = 0;
    for (let r = 0; r < counts.length; r++) {
      const run = counts[r];
      if (r % 2 === 1 && run > 0) {
        // Ones from position to position + run - 1, split at column ends.
        let start = position;
        const end = position + run;
        while (start < end) {
          const column = Math.floor(start / imageHeight);
          const y0 = start - column * imageHeight;
          const y1 = Math.min(imageHeight, y0 + (end - start));
          // Scaled up, a source pixel covers several target pixels: fill them all (no gaps).
          const x0 = Math.min(width - 1, Math.floor(column * scale));
          const x1 = Math.min(width - 1, Math.max(x0, Math.ceil((column + 1) * scale) - 1));
          const ty0 = Math.min(height - 1, Math.floor(y0 * scale));
          const ty1 = Math.min(height - 1, Math.max(ty0, Math.ceil(y1 * scale) - 1));
          for (let x = x0; x <= x1; x++) {
            for (let ty = ty0; ty <= ty1; ty++) {
              const o = (ty * width + x) * 4;
              data[o] = color[0];
              data[o + 1] = color[1];
              data[o + 2] = color[2];
              data[o + 3] = 255;
            }
          }
          start += y1 - y0;
        }
      }
      position += run;
    }
    ctx.putImageData(pixels, 0, 0);
    return canvas;
  }

  window.MaskrcnnMasks = { decodeRle, maskCanvas };
})();
