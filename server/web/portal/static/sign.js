// "Sign my own document": a PDF is rendered with pdf.js; the signer drags the signature box onto a page (or
// moves it with the arrow keys, or types the position). The page and box go to the server in PDF points.
import { SCALE, message, open, renderPages } from "./pdfview.js";

const BOX = { w: 180, h: 60 }; // the signature box, in points

const form = document.getElementById("sign-form");
const input = document.getElementById("file");
const placement = document.getElementById("placement");
const pagesEl = document.getElementById("pages");
const state = document.getElementById("placement-state");
const status = document.getElementById("sign-status");
const fields = Object.fromEntries(["page", "x", "y", "w", "h"].map((n) => [n, document.getElementById(n)]));
const views = []; // per page (index 0 = page 1): { element, page, viewport }
let box = null;
let tray = null;

function makeBox() {
  const el = document.createElement("div");
  el.className = "sigbox";
  el.id = "sigbox";
  el.tabIndex = 0;
  el.setAttribute("role", "button");
  el.setAttribute("aria-label", placement.querySelector("legend").textContent);
  el.setAttribute("aria-describedby", "placement-help");
  el.textContent = "✍ Signatur";
  el.addEventListener("pointerdown", startDrag);
  el.addEventListener("keydown", keyMove);
  return el;
}

function sizeBox() {
  const w = Number(fields.w.value) || BOX.w, h = Number(fields.h.value) || BOX.h;
  box.style.width = `${w * SCALE}px`;
  box.style.height = `${h * SCALE}px`;
}

/** Put the box on page ``page`` (1-based) with its lower left corner at (x, y) points; fill the fields. */
function place(page, x, y) {
  const view = views[page - 1];
  if (!view) return;
  const w = Number(fields.w.value) || BOX.w, h = Number(fields.h.value) || BOX.h;
  const [pw, ph] = [view.viewport.width, view.viewport.height];
  const [left, bottom] = view.viewport.convertToViewportPoint(x, y);
  const clampedLeft = Math.min(Math.max(left, 0), pw - w * SCALE);
  const clampedTop = Math.min(Math.max(bottom - h * SCALE, 0), ph - h * SCALE);
  const [px, py] = view.viewport.convertToPdfPoint(clampedLeft, clampedTop + h * SCALE);
  view.element.appendChild(box);
  box.classList.remove("dragging");
  box.style.left = `${clampedLeft}px`;
  box.style.top = `${clampedTop}px`;
  fields.page.value = String(page);
  fields.x.value = px.toFixed(1);
  fields.y.value = py.toFixed(1);
  fields.w.value = String(w);
  fields.h.value = String(h);
  state.textContent = message(form.dataset.msgPlaced, { page, x: px.toFixed(0), y: py.toFixed(0) });
}

function startDrag(event) {
  event.preventDefault();
  const rect = box.getBoundingClientRect();
  const dx = event.clientX - rect.left, dy = event.clientY - rect.top;
  document.body.appendChild(box);
  box.classList.add("dragging");
  const follow = (e) => { box.style.left = `${e.clientX - dx}px`; box.style.top = `${e.clientY - dy}px`; };
  follow(event);
  const drop = (e) => {
    document.removeEventListener("pointermove", follow);
    document.removeEventListener("pointerup", drop);
    const left = e.clientX - dx, top = e.clientY - dy;
    const hit = views.findIndex((v) => {
      const r = v.element.getBoundingClientRect();
      return e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
    });
    if (hit < 0) { tray.appendChild(box); box.classList.remove("dragging"); box.style.left = box.style.top = ""; return; }
    const r = views[hit].element.getBoundingClientRect();
    const h = (Number(fields.h.value) || BOX.h) * SCALE;
    const [x, y] = views[hit].viewport.convertToPdfPoint(left - r.left, top - r.top + h);
    place(hit + 1, x, y);
    box.focus();
  };
  document.addEventListener("pointermove", follow);
  document.addEventListener("pointerup", drop);
}

function keyMove(event) {
  const step = event.shiftKey ? 20 : 5;
  const page = Number(fields.page.value) || 0;
  let x = Number(fields.x.value) || 36, y = Number(fields.y.value) || 36;
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
  if (event.key in moves) {
    x += moves[event.key][0];
    y += moves[event.key][1];
    place(page || 1, x, y);
  } else if (event.key === "PageDown" || event.key === "PageUp") {
    place(Math.min(Math.max((page || 1) + (event.key === "PageDown" ? 1 : -1), 1), views.length), x, y);
  } else {
    return;
  }
  event.preventDefault();
  box.focus();
}

async function show(file) {
  views.length = 0;
  pagesEl.replaceChildren();
  for (const f of Object.values(fields)) f.value = "";
  const isPdf = file && (file.type === "application/pdf" || file.name.toLowerCase().endsWith(".pdf"));
  placement.hidden = !isPdf;
  if (!isPdf) return;
  const pdf = await open({ data: await file.arrayBuffer() });
  tray = document.createElement("div");
  tray.className = "tray";
  box = makeBox();
  tray.appendChild(box);
  pagesEl.appendChild(tray);
  fields.w.value = String(BOX.w);
  fields.h.value = String(BOX.h);
  sizeBox();
  views.push(...await renderPages(pdf, pagesEl, form.dataset.msgPage));
}

const showChosen = () => show(input.files[0]).catch((error) => { state.textContent = String(error); });
input.addEventListener("change", showChosen);
if (input.files.length) showChosen(); // chosen before this module had loaded (a slow connection or machine)
for (const name of ["page", "x", "y", "w", "h"]) {
  fields[name].addEventListener("change", () => {
    if (!box || !fields.page.value) return;
    sizeBox();
    place(Number(fields.page.value), Number(fields.x.value), Number(fields.y.value));
  });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  status.textContent = form.dataset.msgSigning;
  const data = new FormData(form);
  const response = await fetch(form.action, { method: "POST", body: data, credentials: "same-origin",
    headers: { Accept: "application/json", "X-CSRF-Token": data.get("csrf") } });
  const body = await response.json().catch(() => ({}));
  if (response.ok && body.result) {
    window.location.assign(body.result);
  } else {
    status.textContent = body.detail || `HTTP ${response.status}`;
  }
});
