// A due workflow step: its document drawn with pdf.js and the place of the signature highlighted: the
// signature field named by the step (its widget's rectangle, found in the page's annotations), or the
// template's page and box. Where the template fixes neither, the signer drags the signature box onto a page
// (placebox.js); its page and box go with the step's form.
import { message, open, renderPages } from "./pdfview.js";
import { PlaceBox, placementFields } from "./placebox.js";

const pagesEl = document.getElementById("pages");
const state = document.getElementById("field-state");
const placement = document.getElementById("placement");

/** The page (1-based) and rectangle [x1, y1, x2, y2] in PDF points of the widget of field ``name``. */
async function findField(views, name) {
  for (const [index, view] of views.entries()) {
    const widget = (await view.page.getAnnotations()).find((a) => a.subtype === "Widget" && a.fieldName === name);
    if (widget) return { page: index + 1, rect: widget.rect };
  }
  return null;
}

/** The template's position: page (negative counts from the end) and box [x, y, width, height]. */
function fixedPlace(views) {
  const [x, y, w, h] = pagesEl.dataset.box.split(",").map(Number);
  const wanted = Number(pagesEl.dataset.page);
  return { page: wanted < 0 ? views.length + 1 + wanted : wanted, rect: [x, y, x + w, y + h] };
}

function highlight(view, rect) {
  const [left, top, right, bottom] = view.viewport.convertToViewportRectangle(rect);
  const mark = document.createElement("div");
  mark.className = "field-highlight";
  mark.id = "field-highlight";
  mark.setAttribute("aria-hidden", "true");
  mark.style.left = `${Math.min(left, right)}px`;
  mark.style.top = `${Math.min(top, bottom)}px`;
  mark.style.width = `${Math.abs(right - left)}px`;
  mark.style.height = `${Math.abs(bottom - top)}px`;
  view.element.appendChild(mark);
  mark.scrollIntoView({ block: "center" });
}

/** The signer places the signature: the box in its tray above the pages, the position into the form. */
async function showPlaceable(pdf) {
  const status = document.getElementById("placement-state");
  const box = new PlaceBox({
    fields: placementFields(), label: placement.querySelector("legend").textContent, describedBy: "placement-help",
    placed: ({ page, x, y }) => {
      status.textContent = message(placement.dataset.msgPlaced, { page, x: x.toFixed(0), y: y.toFixed(0) });
    },
  });
  box.attach(pagesEl);
  box.views = await renderPages(pdf, pagesEl, pagesEl.dataset.msgPage);
  pagesEl.dataset.highlighted = "none";
}

async function show() {
  const pdf = await open({ url: pagesEl.dataset.document });
  if (placement) return showPlaceable(pdf);
  const views = await renderPages(pdf, pagesEl, pagesEl.dataset.msgPage);
  const field = pagesEl.dataset.field;
  const place = field ? await findField(views, field) : pagesEl.dataset.box ? fixedPlace(views) : null;
  if (place && views[place.page - 1]) {
    highlight(views[place.page - 1], place.rect);
    state.textContent = message(field ? pagesEl.dataset.msgField : pagesEl.dataset.msgBox, { field, page: place.page });
  } else if (field) {
    state.textContent = message(pagesEl.dataset.msgMissing, { field });
  }
  pagesEl.dataset.highlighted = place ? String(place.page) : "none";
}

show().catch((error) => { state.textContent = String(error); pagesEl.dataset.highlighted = "error"; });
