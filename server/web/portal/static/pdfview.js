// pdf.js rendering shared by the portal's pages: every page of a PDF drawn into a .pdf-page element.
import * as pdfjs from "./vendor/pdfjs/pdf.min.mjs";

pdfjs.GlobalWorkerOptions.workerSrc = "/portal/static/vendor/pdfjs/pdf.worker.min.mjs";
export const SCALE = 0.9; // CSS pixels per PDF point on screen

/** ``template`` with each {name} replaced by ``values[name]``. */
export function message(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, key) => String(values[key]));
}

/** Open ``source`` (``{ data }`` or ``{ url }``) with pdf.js. */
export function open(source) {
  return pdfjs.getDocument({ ...source, isEvalSupported: false,
    standardFontDataUrl: "/portal/static/vendor/pdfjs/standard_fonts/" }).promise;
}

/** Draw every page of ``pdf`` into ``container`` (labelled with ``pageLabel``, e.g. "Page {n}"); per page
 * (index 0 = page 1) its element, pdf.js page and viewport. Sets ``container.dataset.rendered`` when done. */
export async function renderPages(pdf, container, pageLabel) {
  const views = [];
  for (let n = 1; n <= pdf.numPages; n++) {
    const page = await pdf.getPage(n);
    const viewport = page.getViewport({ scale: SCALE });
    const element = document.createElement("div");
    element.className = "pdf-page";
    element.dataset.page = String(n);
    const canvas = document.createElement("canvas");
    canvas.width = Math.floor(viewport.width);
    canvas.height = Math.floor(viewport.height);
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", message(pageLabel, { n }));
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = message(pageLabel, { n });
    element.append(canvas, label);
    container.appendChild(element);
    views.push({ element, page, viewport });
    await page.render({ canvasContext: canvas.getContext("2d"), viewport }).promise;
  }
  container.dataset.rendered = String(pdf.numPages);
  return views;
}
