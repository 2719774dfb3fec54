// "Sign my own document": a PDF is rendered with pdf.js; the signer drags the signature box onto a page (or
// moves it with the arrow keys, or types the position); placebox.js does that. The page and box go to the
// server in PDF points.
import { message, open, renderPages } from "./pdfview.js";
import { PlaceBox, placementFields } from "./placebox.js";

const form = document.getElementById("sign-form");
const input = document.getElementById("file");
const placement = document.getElementById("placement");
const pagesEl = document.getElementById("pages");
const state = document.getElementById("placement-state");
const status = document.getElementById("sign-status");
const box = new PlaceBox({
  fields: placementFields(), label: placement.querySelector("legend").textContent, describedBy: "placement-help",
  placed: ({ page, x, y }) => {
    state.textContent = message(form.dataset.msgPlaced, { page, x: x.toFixed(0), y: y.toFixed(0) });
  },
});

async function show(file) {
  box.clear();
  pagesEl.replaceChildren();
  const isPdf = file && (file.type === "application/pdf" || file.name.toLowerCase().endsWith(".pdf"));
  placement.hidden = !isPdf;
  if (!isPdf) return;
  const pdf = await open({ data: await file.arrayBuffer() });
  box.attach(pagesEl);
  box.views = await renderPages(pdf, pagesEl, form.dataset.msgPage);
}

const showChosen = () => show(input.files[0]).catch((error) => { state.textContent = String(error); });
input.addEventListener("change", showChosen);
if (input.files.length) showChosen(); // chosen before this module had loaded (a slow connection or machine)

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
