// The drawing page's interface (docs/demo.md): draw a digit, or pick a test image, and see what the model makes of
// it: the 28x28 input, the ten probabilities, and each class's evidence map. The mathematics is model.js; the
// model and the test images are data.js, which the site build writes (scripts/mkdocs_hooks.py).
(function () {
  "use strict";

  const M = window.LrDemo;
  const SIDE = 280; // the drawing canvas, in its own pixels
  const PEN = 22; // the pen's width there: MNIST's strokes, about 2 pixels, once a digit is 20 pixels tall
  const PEN_WIDTHS = [6, 44]; // the pen-width slider's ends: about a quarter of PEN, and twice it
  const STEP = 10; // how far an arrow key moves the pen (Shift: a fifth of it)
  const SATURATED = 0.01; // the share of the evidence maps' pixels that reach the end of their colour scale
  const FAINT = 8 / 255; // canvas values below this are no ink: some browsers add noise to the pixels they read

  function make(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }

  // One decimal, but never "100.0%" for a probability below 1 (evaluate.py's _percent says it the same way).
  function percent(p) {
    const text = (100 * p).toFixed(1) + "%";
    return p < 1 && text === "100.0%" ? ">99.9%" : text;
  }

  function aDigit(d) {
    return d === 8 ? "an 8" : `a ${d}`;
  }

  // Paint values (28 * 28) onto a 28x28 canvas, each through colour(v) -> [r, g, b].
  function paint(canvas, values, colour) {
    const context = canvas.getContext("2d");
    const image = context.createImageData(M.FIELD, M.FIELD);
    values.forEach((v, i) => image.data.set([...colour(v), 255], 4 * i));
    context.putImageData(image, 0, 0);
  }

  // Red where evidence pushes towards the class, blue where it pushes away, white at zero (as weights.png).
  function diverging(limit) {
    return (v) => {
      const t = Math.min(Math.abs(v) / limit, 1), fade = Math.round(255 * (1 - t));
      return v >= 0 ? [255, fade, fade] : [fade, fade, 255];
    };
  }

  // The colour scale's end: the size of evidence that the strongest SATURATED of all pixels of all maps
  // reach (they saturate), so that a few extreme pixels do not wash the rest out.
  function saturation(evidence) {
    const sizes = Float64Array.from(evidence, Math.abs).sort();
    return sizes[Math.floor((1 - SATURATED) * (sizes.length - 1))] || 1;
  }

  function describeRun(run) {
    const c = run.config;
    return [
      "The weights of the run behind these docs (",
      make("code", {}, "make figures"),
      "): ",
      make("code", {}, "python -m lr_from_scratch.train"),
      ` with backend ${c.backend}, seed ${c.seed}, batch ${c.batch_size}, learning rate ${c.lr} (times ` +
        `${c.lr_gamma} every ${c.lr_step} epochs), momentum ${c.momentum}, up to ${c.epochs} epochs, the model ` +
        `of epoch ${run.best_epoch} kept. It classifies ${percent(run.test_accuracy)} of MNIST's test images ` +
        "correctly.",
    ];
  }

  function build(root, data) {
    const model = {
      weight: M.decode(data.model.weight),
      bias: M.decode(data.model.bias),
      mean: data.model.mean,
      std: data.model.std,
    };
    const images = M.decode(data.examples.images);
    const D = M.FIELD * M.FIELD, K = model.bias.length;

    // What the model makes of a field (grey levels in [0, 1]).
    function analyse(field) {
      return M.forward(model, M.scale(field, model.mean, model.std));
    }
    function exampleField(i) {
      return Float64Array.from(images.subarray(i * D, (i + 1) * D), (v) => v / 255);
    }
    function argmax(values) {
      return values.indexOf(Math.max(...values));
    }

    // The page's parts.
    const modes = make("fieldset", { class: "lr-demo__modes" }, make("legend", {}, "Input"));
    for (const [value, text] of [["draw", "Draw a digit"], ["test", "Pick a test image"]]) {
      const radio = make("input", { type: "radio", name: "lr-demo-mode", value, id: `lr-demo-mode-${value}` });
      radio.checked = value === "draw";
      modes.append(make("label", { for: radio.id }, radio, " " + text));
    }
    const canvas = make("canvas", {
      id: "lr-demo-canvas", width: SIDE, height: SIDE, tabindex: "0", role: "application",
      "aria-roledescription": "drawing pad", "aria-label": "Draw a digit", "aria-describedby": "lr-demo-keys",
    });
    const cursor = make("canvas", { class: "lr-demo__cursor", width: SIDE, height: SIDE, "aria-hidden": "true" });
    const clear = make("button", { type: "button", id: "lr-demo-clear", class: "md-button" }, "Clear");
    const penWidth = make("input", { type: "range", id: "lr-demo-pen", min: String(PEN_WIDTHS[0]),
                                     max: String(PEN_WIDTHS[1]), step: "2", value: String(PEN) });
    const drawPanel = make(
      "div", { id: "lr-demo-draw", class: "lr-demo__panel" },
      make("div", { class: "lr-demo__pad" }, canvas, cursor),
      make("div", { class: "lr-demo__tools" }, clear, make("label", { for: penWidth.id }, "Pen width ", penWidth)),
      make("p", { class: "lr-demo__hint", id: "lr-demo-keys" },
        "Mouse, finger or pen. Keyboard: focus the square, Space or Enter to put the pen down or lift it, the " +
        "arrows to move it (Shift: small steps), Delete or Backspace to clear."),
    );
    const select = make("select", { id: "lr-demo-example" });
    const testPanel = make(
      "div", { id: "lr-demo-test", class: "lr-demo__panel" },
      make("label", { for: select.id }, "Test image "),
      select,
    );
    testPanel.hidden = true;
    const input = make("canvas", { id: "lr-demo-input", class: "lr-demo__field", width: M.FIELD, height: M.FIELD,
                                   role: "img", "aria-label": "The model's 28x28 input" });
    const summary = make("p", { id: "lr-demo-summary", class: "lr-demo__summary", "aria-live": "polite" });
    const bars = make("div", { id: "lr-demo-bars", class: "lr-demo__bars" });
    const maps = make("div", { id: "lr-demo-evidence", class: "lr-demo__maps" });
    const bar = [], mapCanvas = [], mapCaption = [];
    for (let k = 0; k < K; k++) {
      const fill = make("span", { class: "lr-demo__fill" });
      const value = make("span", { class: "lr-demo__value" });
      bar.push({ row: make("div", { class: "lr-demo__row" }, make("span", { class: "lr-demo__digit" }, String(k)),
                          make("span", { class: "lr-demo__track" }, fill), value), fill, value });
      bars.append(bar[k].row);
      mapCanvas.push(make("canvas", { class: "lr-demo__field", width: M.FIELD, height: M.FIELD }));
      mapCaption.push(make("figcaption"));
      maps.append(make("figure", { class: "lr-demo__map" }, mapCanvas[k], mapCaption[k]));
    }
    root.replaceChildren(
      make("p", { class: "lr-demo__run" }, ...describeRun(data.run)),
      modes,
      make("div", { class: "lr-demo__top" },
        drawPanel, testPanel,
        make("div", { class: "lr-demo__result" },
          make("figure", { class: "lr-demo__input" }, input, make("figcaption", {}, "the model's input, 28x28")),
          summary, bars)),
      make("p", {}, make("strong", {}, "The evidence for each digit: w", make("sub", {}, "k"), " ⊙ x, pixel by pixel")),
      make("p", {},
        "Red pixels push towards the digit, blue ones away, on one colour scale for all ten (the strongest " +
        `${100 * SATURATED}% of pixels saturate it). z is the logit: the sum of the map, plus the bias.`),
      maps,
    );

    // The examples, their labels and what the model says of them.
    const verdicts = Array.from({ length: data.examples.labels.length }, (_, i) => {
      const p = analyse(exampleField(i)).probabilities;
      return { predicted: argmax(p), confidence: Math.max(...p) };
    });
    const groups = [make("optgroup", { label: "The model's most confident mistakes" })];
    for (let k = 0; k < K; k++) groups.push(make("optgroup", { label: `Digit ${k}` }));
    data.examples.labels.forEach((label, i) => {
      const v = verdicts[i], wrong = v.predicted !== label;
      const text = `test image ${data.examples.indices[i]}: ${aDigit(label)}` +
        (wrong ? `, taken for ${aDigit(v.predicted)} (${percent(v.confidence)})` : "");
      groups[i < data.examples.mistakes ? 0 : 1 + label].append(make("option", { value: String(i) }, text));
    });
    select.append(...groups.filter((g) => g.children.length));

    // Showing a result.
    let current = null;
    function show(field, label) {
      paint(input, field, (v) => Array(3).fill(Math.round(255 * v)));
      const empty = field.every((v) => v === 0);
      const result = empty ? null : analyse(field);
      const predicted = result ? argmax(result.probabilities) : -1;
      for (let k = 0; k < K; k++) {
        const p = result ? result.probabilities[k] : 0;
        bar[k].fill.style.width = percent(p);
        bar[k].value.textContent = result ? percent(p) : "";
        bar[k].row.title = k === predicted ? "the prediction" : k === label ? "the label" : "";
        bar[k].row.classList.toggle("is-predicted", k === predicted);
        bar[k].row.classList.toggle("is-label", k === label);
      }
      const evidence = result ? result.evidence : new Float64Array(K * D);
      const limit = saturation(evidence);
      for (let k = 0; k < K; k++) {
        paint(mapCanvas[k], evidence.subarray(k * D, (k + 1) * D), diverging(limit));
        mapCaption[k].textContent = result ? `${k}: z = ${result.logits[k].toFixed(2)}` : String(k);
      }
      summary.textContent = !result ? "Draw a digit in the square." :
        `The model says ${predicted} (${percent(result.probabilities[predicted])})` +
        (label === undefined ? "." : predicted === label ? `; the label is ${label}.` :
          `; the label is ${label}: a mistake.`);
      current = { field, label, result, predicted };
    }

    // Drawing.
    const ink = canvas.getContext("2d", { willReadFrequently: true });
    function blank() {
      ink.fillStyle = "#000";
      ink.fillRect(0, 0, SIDE, SIDE);
      ink.fillStyle = "#fff";
    }
    ink.lineWidth = PEN;
    ink.lineCap = ink.lineJoin = "round";
    ink.strokeStyle = ink.fillStyle = "#fff";
    function inkValues() { // the canvas's red channel in [0, 1], the faintest values taken for none
      const rgba = ink.getImageData(0, 0, SIDE, SIDE).data;
      return Float64Array.from({ length: SIDE * SIDE }, (_, i) => (rgba[4 * i] / 255 < FAINT ? 0 : rgba[4 * i] / 255));
    }
    function showDrawing() {
      show(M.reduceToField(inkValues(), SIDE, SIDE));
    }
    let last = null, pending = false, drawing = null; // drawing: the pointer that draws, one at a time
    function strokeTo(point) { // a line from the last point, or a dot where a stroke begins
      ink.beginPath();
      if (last === null) {
        ink.arc(...point, ink.lineWidth / 2, 0, 2 * Math.PI);
        ink.fill();
      } else {
        ink.moveTo(...last);
        ink.lineTo(...point);
        ink.stroke();
      }
      last = point;
    }
    function later() { // at most one analysis a frame while a stroke goes on
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; showDrawing(); });
    }
    function at(event) {
      const box = canvas.getBoundingClientRect();
      return [(event.clientX - box.left) * SIDE / box.width, (event.clientY - box.top) * SIDE / box.height];
    }
    // While a stroke goes on, the summary changes every frame: screen readers hear it once the stroke ends.
    function quiet(busy) {
      summary.setAttribute("aria-busy", String(busy));
    }
    canvas.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      if (drawing !== null || event.button !== 0) return; // a second finger, or not the main button
      drawing = event.pointerId;
      canvas.setPointerCapture(event.pointerId);
      quiet(true);
      last = null;
      strokeTo(at(event));
      later();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (event.pointerId !== drawing) return;
      strokeTo(at(event));
      later();
    });
    for (const type of ["pointerup", "pointercancel"]) {
      canvas.addEventListener(type, (event) => {
        if (event.pointerId !== drawing) return;
        drawing = last = null;
        quiet(false);
        showDrawing();
      });
    }

    // The keyboard's pen, drawn on a layer above the canvas while the canvas has the focus.
    const pen = { at: [SIDE / 2, SIDE / 2], down: false };
    const layer = cursor.getContext("2d");
    function drawCursor() {
      layer.clearRect(0, 0, SIDE, SIDE);
      if (document.activeElement !== canvas) return;
      layer.strokeStyle = "#f50";
      layer.lineWidth = 2;
      layer.beginPath();
      layer.arc(...pen.at, ink.lineWidth / 2, 0, 2 * Math.PI);
      layer.stroke();
      if (pen.down) { layer.fillStyle = "rgba(255, 85, 0, 0.4)"; layer.fill(); }
    }
    const moves = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] };
    canvas.addEventListener("keydown", (event) => {
      if (event.key in moves) {
        const step = event.shiftKey ? STEP / 5 : STEP, [dx, dy] = moves[event.key];
        const inside = (v) => Math.min(Math.max(v, 0), SIDE);
        pen.at = [inside(pen.at[0] + dx * step), inside(pen.at[1] + dy * step)];
        if (pen.down) strokeTo(pen.at);
      } else if (event.key === " " || event.key === "Enter") {
        pen.down = !pen.down;
        last = null;
        quiet(pen.down);
        if (pen.down) strokeTo(pen.at);
      } else if (event.key === "Delete" || event.key === "Backspace") {
        blank();
      } else {
        return;
      }
      event.preventDefault();
      drawCursor();
      showDrawing();
    });
    canvas.addEventListener("focus", drawCursor);
    canvas.addEventListener("blur", drawCursor);
    // The next strokes' width; what is drawn stays as it is.
    penWidth.addEventListener("input", () => { ink.lineWidth = Number(penWidth.value); drawCursor(); });

    clear.addEventListener("click", () => {
      blank();
      pen.down = false;
      last = null;
      quiet(false);
      showDrawing();
    });

    // The two modes.
    function showExample() {
      const i = Number(select.value);
      show(exampleField(i), data.examples.labels[i]);
    }
    select.addEventListener("change", showExample);
    modes.addEventListener("change", () => {
      const drawing = modes.querySelector("input:checked").value === "draw";
      drawPanel.hidden = !drawing;
      testPanel.hidden = drawing;
      if (drawing) showDrawing(); else showExample();
    });

    blank();
    showDrawing();
    // The picture of the page, for where it cannot run, is not needed where it does.
    for (const node of document.querySelectorAll(".lr-demo-static")) node.style.display = "none";
    // For the tests and the curious (in the browser's console): the data, the model's functions, the state.
    window.LrDemoPage = { SIDE, data, model, analyse, exampleField, inkValues, current: () => current, ready: true };
  }

  const root = document.getElementById("lr-demo");
  if (!root) return;
  if (!window.LR_DEMO_DATA) {
    root.textContent = "The model's data (javascripts/demo/data.js) did not load: it is written when the site is " +
      "built (make docs), so open the built site, not this page's source.";
    return;
  }
  build(root, window.LR_DEMO_DATA);
})();
