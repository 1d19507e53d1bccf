// The web page: draw a caption with POST /v1/generate, show every stage's image and each
// word's attention map (the paper's Figure 2); change one word with the same seed and show
// both images side by side (Figure 5). Plain DOM, no library.
"use strict";

const $ = (id) => document.getElementById(id);
let last = null; // {tokens, words, seed, n, captions: [...]} of the latest drawing

function element(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.appendChild(child);
  return node;
}

function figure(src, label, cls, extra = {}) {
  return element("figure", {}, [
    element("img", { src, alt: label, class: cls, ...extra }),
    element("figcaption", { text: label }),
  ]);
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function generate(caption, n, seed) {
  const body = { captions: [caption], n, attention: true, format: "url" };
  if (seed !== null) body.seed = seed;
  const response = await fetch("/v1/generate", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function readSeed() {
  const text = $("seed").value.trim();
  return text === "" ? null : Number(text);
}

function renderTokens(caption) {
  const kept = new Set(caption.words);
  const box = $("tokens");
  box.replaceChildren();
  for (const token of caption.tokens) {
    const known = kept.has(token);
    box.appendChild(element("span", {
      class: known ? "word" : "oov", text: token,
      title: known ? "in the vocabulary" : "not in the vocabulary: dropped",
    }));
  }
}

function renderSample(sample, index) {
  const node = element("div", { class: "sample", "data-sample": String(index) });
  node.appendChild(element("h3", { text: `Image ${index + 1}` }));
  node.appendChild(element("div", { class: "stages" }, sample.stages.map((img) =>
    figure(img.url, `${img.width}×${img.height}`, "stage", { "data-size": String(img.width) }))));
  for (const stage of sample.attention || []) {
    node.appendChild(element("p", { class: "maps-title",
      text: `Attention of each word over the ${stage.size}×${stage.size} image` }));
    node.appendChild(element("div", { class: "maps", "data-size": String(stage.size) }, stage.words.map((w) =>
      figure(w.image.url, w.word, "word-map", { "data-word": w.word }))));
  }
  return node;
}

function renderWordChoice(words) {
  const select = $("word-index");
  select.replaceChildren(...words.map((word, i) => element("option", { value: String(i), text: word })));
  $("change").hidden = false;
  $("comparison").replaceChildren();
}

async function draw(event) {
  event.preventDefault();
  showError("");
  const caption = $("caption").value;
  const n = Number($("count").value);
  $("draw").disabled = true;
  $("status").textContent = "drawing…";
  try {
    const data = await generate(caption, n, readSeed());
    const result = data.captions[0];
    $("seed").value = String(data.seed);
    last = { words: result.words, seed: data.seed, n, images: result.images };
    renderTokens(result);
    $("samples").replaceChildren(...result.images.map(renderSample));
    $("results").hidden = false;
    renderWordChoice(result.words);
    $("status").textContent = `seed ${data.seed}: ${n} image(s) in ${data.elapsed.toFixed(2)} s ` +
      `(generator call shared by ${data.batch.requests} request(s))`;
  } catch (err) {
    $("status").textContent = "";
    showError(err.message);
  } finally {
    $("draw").disabled = false;
  }
}

function captionLabel(words, changed) {
  return element("figcaption", {}, words.map((word, i) =>
    element("span", { class: i === changed ? "changed" : "", text: word + " " })));
}

async function compare() {
  showError("");
  const index = Number($("word-index").value);
  const replacement = $("new-word").value.trim();
  if (!last || !replacement) { showError("new word: type the word that replaces the chosen one"); return; }
  const words = last.words.slice();
  words[index] = replacement;
  $("status").textContent = "drawing the changed caption with the same noise…";
  try {
    const data = await generate(words.join(" "), last.n, last.seed);
    const changed = data.captions[0];
    const box = $("comparison");
    box.replaceChildren();
    last.images.forEach((before, i) => {
      const a = before.stages[before.stages.length - 1];
      const b = changed.images[i].stages[changed.images[i].stages.length - 1];
      box.appendChild(element("div", { class: "pair" }, [
        element("figure", {}, [element("img", { src: a.url, alt: "before", class: "before" }),
          captionLabel(last.words, index)]),
        element("figure", {}, [element("img", { src: b.url, alt: "after", class: "after" }),
          captionLabel(changed.words, changed.words.length === words.length ? index : -1)]),
      ]));
    });
    $("status").textContent = `seed ${data.seed}: "${last.words[index]}" → "${replacement}"` +
      (changed.dropped.length ? ` (dropped as unknown: ${changed.dropped.join(", ")})` : "");
  } catch (err) {
    $("status").textContent = "";
    showError(err.message);
  }
}

async function describeModel() {
  try {
    const info = await (await fetch("/v1/info")).json();
    const sizes = info.stages.map((s) => `${s.size}×${s.size}`).join(", ");
    $("model-info").textContent = `${info.config.dataset} / ${info.config.name}: stages ${sizes}, ` +
      `${info.vocabulary_size} words, on ${info.device}`;
    if (info.example_caption) $("caption").value = info.example_caption;
  } catch (err) {
    $("model-info").textContent = `could not read /v1/info: ${err.message}`;
  }
}

$("draw-form").addEventListener("submit", draw);
$("compare").addEventListener("click", compare);
$("random-seed").addEventListener("click", () => {
  $("seed").value = String(Math.floor(Math.random() * 4294967296));
});
describeModel();
