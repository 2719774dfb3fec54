// The signature box the signer drags onto a page drawn by pdfview.js (or moves with the arrow keys, or whose
// position they type into the fields page, x, y, w, h): the page (1-based) and the box in PDF points from the
// lower left go to the server in those fields. Used by "Sign my own document" and a workflow step's page.
import { SCALE } from "./pdfview.js";

const BOX = { w: 180, h: 60 }; // the signature box's default size, in points
const NAMES = ["page", "x", "y", "w", "h"];

export class PlaceBox {
  /** ``fields``: the inputs page, x, y, w, h by name; ``label``: the box's accessible name; ``describedBy``: the
   * id of the help text; ``placed({ page, x, y })``: told each new position (x, y rounded to 0.1 points). */
  constructor({ fields, label, describedBy, placed }) {
    this.fields = fields;
    this.placed = placed;
    this.views = []; // per page (index 0 = page 1): { element, page, viewport }, as renderPages gives them
    this.box = document.createElement("div");
    this.box.className = "sigbox";
    this.box.id = "sigbox";
    this.box.tabIndex = 0;
    this.box.setAttribute("role", "button");
    this.box.setAttribute("aria-label", label);
    this.box.setAttribute("aria-describedby", describedBy);
    this.box.textContent = "✍ Signatur";
    this.box.addEventListener("pointerdown", (event) => this.startDrag(event));
    this.box.addEventListener("keydown", (event) => this.keyMove(event));
    this.tray = document.createElement("div");
    this.tray.className = "tray";
    this.tray.appendChild(this.box);
    for (const name of NAMES) {
      fields[name].addEventListener("change", () => {
        if (!this.views.length || !fields.page.value) return;
        this.size();
        this.place(Number(fields.page.value), Number(fields.x.value), Number(fields.y.value));
      });
    }
  }

  /** Empty the fields and forget the pages (another document is about to be shown). */
  clear() {
    this.views = [];
    for (const name of NAMES) this.fields[name].value = "";
    this.toTray();
  }

  /** Put the tray holding the box into ``container`` (before the pages) with the box at its default size. */
  attach(container) {
    container.appendChild(this.tray);
    this.fields.w.value = String(BOX.w);
    this.fields.h.value = String(BOX.h);
    this.size();
  }

  width() { return Number(this.fields.w.value) || BOX.w; }

  height() { return Number(this.fields.h.value) || BOX.h; }

  size() {
    this.box.style.width = `${this.width() * SCALE}px`;
    this.box.style.height = `${this.height() * SCALE}px`;
  }

  toTray() {
    this.tray.appendChild(this.box);
    this.box.classList.remove("dragging");
    this.box.style.left = this.box.style.top = "";
  }

  /** Put the box on page ``page`` (1-based) with its lower left corner at (x, y) points, kept on the page. */
  place(page, x, y) {
    const view = this.views[page - 1];
    if (!view) return;
    const w = this.width(), h = this.height();
    const [pw, ph] = [view.viewport.width, view.viewport.height];
    const [left, bottom] = view.viewport.convertToViewportPoint(x, y);
    const clampedLeft = Math.min(Math.max(left, 0), pw - w * SCALE);
    const clampedTop = Math.min(Math.max(bottom - h * SCALE, 0), ph - h * SCALE);
    const [px, py] = view.viewport.convertToPdfPoint(clampedLeft, clampedTop + h * SCALE);
    view.element.appendChild(this.box);
    this.box.classList.remove("dragging");
    this.box.style.left = `${clampedLeft}px`;
    this.box.style.top = `${clampedTop}px`;
    const f = this.fields;
    f.page.value = String(page);
    f.x.value = px.toFixed(1);
    f.y.value = py.toFixed(1);
    f.w.value = String(w);
    f.h.value = String(h);
    this.placed({ page, x: px, y: py });
  }

  startDrag(event) {
    event.preventDefault();
    const box = this.box;
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
      const hit = this.views.findIndex((v) => {
        const r = v.element.getBoundingClientRect();
        return e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
      });
      if (hit < 0) { this.toTray(); return; }
      const r = this.views[hit].element.getBoundingClientRect();
      const [x, y] = this.views[hit].viewport.convertToPdfPoint(left - r.left, top - r.top + this.height() * SCALE);
      this.place(hit + 1, x, y);
      box.focus();
    };
    document.addEventListener("pointermove", follow);
    document.addEventListener("pointerup", drop);
  }

  keyMove(event) {
    const step = event.shiftKey ? 20 : 5;
    const page = Number(this.fields.page.value) || 1;
    let x = Number(this.fields.x.value) || 36, y = Number(this.fields.y.value) || 36;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
    if (event.key in moves) {
      x += moves[event.key][0];
      y += moves[event.key][1];
      this.place(page, x, y);
    } else if (event.key === "PageDown" || event.key === "PageUp") {
      this.place(Math.min(Math.max(page + (event.key === "PageDown" ? 1 : -1), 1), this.views.length), x, y);
    } else {
      return;
    }
    event.preventDefault();
    this.box.focus();
  }
}

/** The inputs page, x, y, w, h (their ids) by name. */
export function placementFields() {
  return Object.fromEntries(NAMES.map((n) => [n, document.getElementById(n)]));
}
