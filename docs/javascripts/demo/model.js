// The model of the drawing page (docs/demo.md), in plain JavaScript: a drawing reduced to MNIST's 28x28 field,
// the scaling of training, the ten logits, their softmax, and the evidence maps. lr_from_scratch/data/field.py
// is the same reduction in Python; tests/test_demo.py holds the two within 1e-12 of each other, and these
// probabilities to NumPy's.
(function () {
  "use strict";

  const FIELD = 28; // the side of MNIST's field
  const BOX = 20; // the side of the box a digit is scaled to fit
  const TIE = 1e-9; // how near to a half roundHalfDown takes for one

  // x to the nearest whole number, halves down, as MNIST placed its digits; anything within TIE of a half is
  // taken for one, so that sums added in another order agree.
  function roundHalfDown(x) {
    return Math.ceil(x - 0.5 - TIE);
  }

  // (nOut, nIn), row-major: row i is the share of each input pixel [j, j + 1) in output pixel i's span
  // [i s, i s + s), s = nIn / nOut, divided by s; so multiplying a line of nIn pixels by it averages them into nOut.
  function areaWeights(nIn, nOut) {
    const span = nIn / nOut;
    const weights = new Float64Array(nOut * nIn);
    for (let i = 0; i < nOut; i++) {
      const low = i * span;
      for (let j = 0; j < nIn; j++) {
        const overlap = Math.min(j + 1, low + span) - Math.max(j, low);
        if (overlap > 0) weights[i * nIn + j] = overlap / span;
      }
    }
    return weights;
  }

  // ink (height, width), row-major, 0 no ink to 1 full ink -> the field (28 * 28), grey levels in [0, 1]:
  // 1. crop to the ink's bounding box (h, w);
  // 2. area-average it to (round(20 h / m), round(20 w / m)), m = max(h, w): the longer side 20 pixels;
  // 3. place that in the field, shifted by whole pixels so that its centre of mass, in pixel indices, lands
  //    as near as they allow to (14, 14), and kept whole inside it: the rule MNIST's own digits follow.
  function reduceToField(ink, width, height) {
    let top = height, bottom = -1, left = width, right = -1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (ink[y * width + x] > 0) {
          top = Math.min(top, y);
          bottom = Math.max(bottom, y);
          left = Math.min(left, x);
          right = Math.max(right, x);
        }
      }
    }
    const field = new Float64Array(FIELD * FIELD);
    if (bottom < 0) return field; // no ink
    const h = bottom - top + 1, w = right - left + 1, longest = Math.max(h, w);
    const th = Math.max(1, roundHalfDown((BOX * h) / longest));
    const tw = Math.max(1, roundHalfDown((BOX * w) / longest));
    const rowWeights = areaWeights(h, th), colWeights = areaWeights(w, tw);
    const tall = new Float64Array(th * w); // rowWeights @ crop: (th, w)
    for (let i = 0; i < th; i++) {
      for (let y = 0; y < h; y++) {
        const share = rowWeights[i * h + y];
        if (share === 0) continue;
        for (let x = 0; x < w; x++) tall[i * w + x] += share * ink[(top + y) * width + left + x];
      }
    }
    const small = new Float64Array(th * tw); // tall @ colWeights^T: (th, tw)
    let mass = 0, rowMoment = 0, colMoment = 0;
    for (let i = 0; i < th; i++) {
      for (let k = 0; k < tw; k++) {
        let sum = 0;
        for (let x = 0; x < w; x++) sum += tall[i * w + x] * colWeights[k * w + x];
        small[i * tw + k] = sum;
        mass += sum;
        rowMoment += i * sum;
        colMoment += k * sum;
      }
    }
    const centre = FIELD / 2; // where MNIST's digits have their centre of mass
    const clamp = (v, high) => Math.min(Math.max(v, 0), high);
    const fieldTop = clamp(roundHalfDown(centre - rowMoment / mass), FIELD - th);
    const fieldLeft = clamp(roundHalfDown(centre - colMoment / mass), FIELD - tw);
    for (let i = 0; i < th; i++) {
      for (let k = 0; k < tw; k++) field[(fieldTop + i) * FIELD + fieldLeft + k] = small[i * tw + k];
    }
    return field;
  }

  // The scaling of training: x = (field - mean) / std, where field = pixels / 255.
  function scale(field, mean, std) {
    return Float64Array.from(field, (v) => (v - mean) / std);
  }

  // softmax(z)_k = exp(z_k - max z) / sum_j exp(z_j - max z): the largest term is exp(0), nothing overflows.
  function softmax(z) {
    const top = Math.max(...z);
    const e = Float64Array.from(z, (v) => Math.exp(v - top));
    const total = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / total);
  }

  // model: weight (K * D, row-major, nn.Linear's layout), bias (K); x (D) -> the logits z_k = w_k . x + b_k,
  // their probabilities softmax(z), and the evidence maps e_k = w_k * x, element by element (K * D):
  // z_k is the sum of e_k plus b_k, so e_k shows which pixels push towards class k (> 0) or away (< 0).
  function forward(model, x) {
    const K = model.bias.length, D = x.length;
    const logits = new Float64Array(K), evidence = new Float64Array(K * D);
    for (let k = 0; k < K; k++) {
      let z = model.bias[k];
      for (let j = 0; j < D; j++) {
        const e = model.weight[k * D + j] * x[j];
        evidence[k * D + j] = e;
        z += e;
      }
      logits[k] = z;
    }
    return { logits, probabilities: softmax(logits), evidence };
  }

  // An array as lr_from_scratch.demo.encode writes it, {dtype, shape, base64 of its little-endian bytes},
  // as a typed array of its values (browsers run on little-endian machines, so the bytes are read as they are).
  function decode(encoded) {
    const types = { uint8: Uint8Array, float32: Float32Array, float64: Float64Array };
    const bytes = Uint8Array.from(atob(encoded.base64), (c) => c.charCodeAt(0));
    return new types[encoded.dtype](bytes.buffer);
  }

  window.LrDemo = { FIELD, BOX, TIE, roundHalfDown, areaWeights, reduceToField, scale, softmax, forward, decode };
})();
