// mapper serve: the page. Everything it shows comes from /api/* and /tiles/* of the local app.
"use strict";

const state = { view: null, grid: null, colourBy: null, overlays: {}, selected: null, fields: null };
const map = L.map("map", { zoomControl: true, maxZoom: 19 });

async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? v.toLocaleString() : v.toPrecision(4);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// ---------------------------------------------------------------------------------------------- layers
function addTileLayers(view) {
  const control = L.control.layers(null, null, { collapsed: false }).addTo(map);
  for (const layer of view.layers) {
    const tl = L.tileLayer(`/tiles/${layer.id}/{z}/{x}/{y}.png`, {
      minZoom: layer.min_zoom, maxZoom: 19, maxNativeZoom: 16,  // below min_zoom the grid tells the story
      opacity: layer.kind === "imagery" ? 1 : 0.8, className: `layer-${layer.id}`,
    });
    tl.mapperKind = layer.kind;
    state.overlays[layer.id] = tl;
    control.addOverlay(tl, `${layer.name}${layer.min_zoom > 0 ? ` (zoom ≥ ${layer.min_zoom})` : ""}`);
    if (layer.visible) tl.addTo(map);
  }
  return control;
}

function colourOf(props) {
  const table = state.view.colour_by[state.colourBy] || {};
  let value = props[state.colourBy];
  if (state.colourBy === "iqa") value = props[`iqa_${state.view.sources[0]}`];
  return table[value] || "#bdbdbd";
}

function gridStyle(feature) {
  const selected = state.selected && feature.properties.block_id === state.selected;
  return { color: selected ? "#ffffff" : colourOf(feature.properties), weight: selected ? 3 : 2,
           fillOpacity: 0.15, opacity: 0.95 };
}

async function loadGrid(control) {
  const data = await getJSON("/api/grid.geojson");
  if (state.grid) { control.removeLayer(state.grid); map.removeLayer(state.grid); }
  state.grid = L.geoJSON(data, {
    style: gridStyle,
    onEachFeature: (f, layer) => {
      layer.on("add", () => {
        const path = layer.getElement && layer.getElement();
        if (path) { path.classList.add("block"); path.setAttribute("data-block-id", f.properties.block_id); }
      });
      layer.bindTooltip(`${f.properties.block_id}${f.properties.round ? ` (round ${f.properties.round})` : ""}`);
      layer.on("click", () => inspect(f.properties.block_id));
    },
  }).addTo(map);
  control.addOverlay(state.grid, "block grid");
}

function drawLegend() {
  const legend = document.getElementById("legend");
  legend.replaceChildren(el("h3", { id: "legend-title" }, `blocks: ${state.colourBy}`));
  legend.setAttribute("data-colour-by", state.colourBy);
  for (const [name, colour] of Object.entries(state.view.colour_by[state.colourBy] || {})) {
    const sw = el("span", { class: "swatch", style: `background:${colour}` });
    legend.append(el("div", { class: "entry" }, sw, name));
  }
  for (const layer of state.view.layers) {
    if (!map.hasLayer(state.overlays[layer.id])) continue;  // the legend of what is drawn
    for (const item of layer.legend || []) {
      const sw = el("span", { class: "swatch", style: `background:${item.colour}` });
      legend.append(el("div", { class: "entry" }, sw, `${item.label} (${layer.name})`));
    }
  }
  if (state.view.label_colours) {
    const names = { "1": "returned: cropland", "0": "returned: not cropland", "255": "returned: ignore" };
    for (const [cls, colour] of Object.entries(state.view.label_colours)) {
      legend.append(el("div", { class: "entry" }, el("span", { class: "swatch", style: `background:${colour}` }),
        names[cls] || cls));
    }
  }
}

function setupColourBy() {
  const select = document.getElementById("colour-by");
  const options = Object.keys(state.view.colour_by);
  select.replaceChildren(...options.map((o) => el("option", { value: o }, o)));
  state.colourBy = options[0];
  select.value = state.colourBy;
  select.addEventListener("change", () => {
    state.colourBy = select.value;
    if (state.grid) state.grid.setStyle(gridStyle);
    drawLegend();
  });
}

function setupOpacity() {
  const slider = document.getElementById("opacity");
  slider.addEventListener("input", () => {
    for (const tl of Object.values(state.overlays)) {
      if (tl.mapperKind !== "imagery") tl.setOpacity(slider.value / 100);
    }
  });
}

async function addLabelLayers(control) {
  for (const round of state.view.rounds || []) {
    const data = await getJSON(`/api/labels/${round}.geojson`);
    const layer = L.geoJSON(data, {
      style: (f) => ({ color: state.view.label_colours[String(f.properties.class)] || "#fff", weight: 1.5,
                       fillOpacity: 0.35 }),
    });
    control.addOverlay(layer, `round ${round}: returned labels`);
    if (round === state.view.rounds[state.view.rounds.length - 1]) layer.addTo(map);
  }
}

// ---------------------------------------------------------------------------------------------- inspector
function table(obj) {
  const t = el("table");
  for (const [k, v] of Object.entries(obj || {})) t.append(el("tr", {}, el("td", {}, k), el("td", {}, fmt(v))));
  return t;
}

async function inspect(blockId, zoomTo = false) {
  const box = document.getElementById("inspector");
  const d = await getJSON(`/api/blocks/${encodeURIComponent(blockId)}`);
  const [w, s, e, n] = d.bounds;
  if (zoomTo) map.fitBounds([[s, w], [n, e]]);
  history.replaceState(null, "", `#block=${blockId}`);
  state.selected = blockId;
  if (state.grid) state.grid.setStyle(gridStyle);
  box.setAttribute("data-block-id", blockId);
  const pics = el("div", { class: "pictures" });
  for (const p of d.pictures) {
    const img = el("img", { src: `/api/blocks/${encodeURIComponent(blockId)}/${p}.png`, alt: p });
    pics.append(el("figure", {}, img, el("figcaption", {}, p)));
  }
  const zoom = el("button", { type: "button", id: "zoom-to-block" }, "zoom to block");
  zoom.addEventListener("click", () => map.fitBounds([[s, w], [n, e]]));
  const parts = [el("h2", { id: "inspector-title" }, `block ${blockId}`), zoom, pics];
  if (d.state) parts.push(el("h3", {}, "state"), table(d.state));
  if (d.validation) {
    const v = {};
    for (const [m, x] of Object.entries(d.validation.maps || {})) {
      v[`${m} IoU`] = x.iou; v[`${m} class (model / truth)`] = `${x.model_class} / ${x.truth_class}`;
    }
    v["truth cropland ha"] = d.validation.truth_cropland_ha;
    parts.push(el("h3", {}, "validation"), table(v));
  }
  if (d.rounds) for (const r of d.rounds) parts.push(el("h3", {}, `round ${r.round}`), table(r));
  if (d.table) parts.push(el("h3", {}, "features and decisions (blocks.parquet)"), table(d.table));
  box.replaceChildren(...parts);
  await showFields(blockId, d.fields);
}

async function showFields(blockId, has) {
  if (state.fields) { map.removeLayer(state.fields); state.fields = null; }
  if (!has) return;
  const data = await getJSON(`/api/blocks/${encodeURIComponent(blockId)}/fields.geojson`);
  state.fields = L.geoJSON(data, {
    style: (f) => ({ color: "#212121", weight: 0.6, fillColor: f.properties.colour, fillOpacity: 0.75 }),
    onEachFeature: (f, layer) => layer.bindTooltip(
      `${f.properties.crop} (p ${fmt(f.properties.crop_prob)}, ${fmt(f.properties.area_m2 / 1e4)} ha)`),
  }).addTo(map);
}

function notes(...extra) {
  const all = [...state.view.status.notes, ...extra];
  document.getElementById("notes").replaceChildren(...all.map((n) => el("p", { class: "note" }, n)));
}

// ---------------------------------------------------------------------------------------------- start
async function start() {
  const view = await getJSON("/api/view");
  state.view = view;
  document.getElementById("title").textContent = `mapper · ${view.kind} ${view.name}`;
  const s = view.status;
  document.getElementById("summary").textContent = view.kind === "run"
    ? `${view.region || ""} · ${s.done} of ${s.planned} blocks done${s.failed ? `, ${s.failed} failed` : ""}`
    : `${view.region || ""} · ${s.rounds} round(s) exported`;
  notes();
  if (view.bounds) {
    const [w, so, e, n] = view.bounds;
    map.fitBounds([[so, w], [n, e]]);
  } else {
    map.setView([35, 105], 4);
  }
  const control = addTileLayers(view);
  setupColourBy();
  setupOpacity();
  await loadGrid(control);
  if (view.kind === "campaign") await addLabelLayers(control);
  drawLegend();
  map.on("overlayadd overlayremove", drawLegend);
  const linked = new URLSearchParams(location.hash.slice(1)).get("block");
  if (linked) await inspect(linked, true).catch(() => notes(`no block ${linked} here`));
  document.body.setAttribute("data-ready", "1");
}

start().catch((e) => {
  document.getElementById("notes").replaceChildren(el("p", { class: "error" }, `could not load: ${e}`));
});
