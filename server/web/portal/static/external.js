// The external signer's page: the document of the link, every page drawn with pdf.js (no plugin, no frame).
import * as pdfjs from "./vendor/pdfjs/pdf.min.mjs";

pdfjs.GlobalWorkerOptions.workerSrc = "/portal/static/vendor/pdfjs/pdf.worker.min.mjs";
const SCALE = 1.2;
const target = document.getElementById("pdf-pages");

async function show() {
  const data = await (await fetch(target.dataset.src, { credentials: "same-origin" })).arrayBuffer();
  const pdf = await pdfjs.getDocument({ data, isEvalSupported: false,
    standardFontDataUrl: "/portal/static/vendor/pdfjs/standard_fonts/" }).promise;
  for (let n = 1; n <= pdf.numPages; n++) {
    const page = await pdf.getPage(n);
    const viewport = page.getViewport({ scale: SCALE });
    const canvas = document.createElement("canvas");
    canvas.width = Math.floor(viewport.width);
    canvas.height = Math.floor(viewport.height);
    canvas.setAttribute("aria-label", `${n} / ${pdf.numPages}`);
    target.appendChild(canvas);
    await page.render({ canvasContext: canvas.getContext("2d"), viewport }).promise;
  }
  target.dataset.rendered = String(pdf.numPages);
}

if (target) show();
