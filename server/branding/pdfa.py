"""What makes a PDF written with pyHanko's ``PdfFileWriter`` a PDF/A-2b or PDF/A-3b document, besides text in
embedded fonts (:data:`FONT` through :class:`server.signing.stamp.EmbeddedFont`) and no transparency: an sRGB
OutputIntent (the ICC profile of Pillow's littleCMS) and XMP metadata with ``pdfaid:part``,
``pdfaid:conformance`` B and ``dc:title`` (pyHanko adds the producer and the dates and writes the document
``/ID``)."""

from __future__ import annotations

from pathlib import Path

from PIL import ImageCms
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name, pdf_string
from pyhanko.pdf_utils.metadata import model
from pyhanko.pdf_utils.writer import PdfFileWriter

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian's fonts-dejavu-core
SRGB = "sRGB IEC61966-2.1"
PDFAID = model.NS["pdfaid"]


def declare_pdfa(writer: PdfFileWriter, part: int, title: str) -> None:
    """Give the new document the sRGB OutputIntent and the XMP metadata of PDF/A-``part``b, titled ``title``."""
    profile = generic.StreamObject({pdf_name("/N"): generic.NumberObject(3)},
                                   stream_data=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile.compress()
    writer.root["/OutputIntents"] = generic.ArrayObject([writer.add_object(generic.DictionaryObject({
        pdf_name("/Type"): pdf_name("/OutputIntent"), pdf_name("/S"): pdf_name("/GTS_PDFA1"),
        pdf_name("/OutputConditionIdentifier"): pdf_string(SRGB), pdf_name("/Info"): pdf_string(SRGB),
        pdf_name("/RegistryName"): pdf_string("http://www.color.org"),
        pdf_name("/DestOutputProfile"): writer.add_object(profile)}))])
    meta = writer.document_meta
    meta.title, meta.created = title, "now"
    meta.xmp_extra = [model.XmpStructure.of((model.ExpandedName(PDFAID, "part"), model.XmpValue(str(part))),
                                            (model.ExpandedName(PDFAID, "conformance"), model.XmpValue("B")))]
