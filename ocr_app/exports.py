"""Reviewed predictions out as a training dataset (the loop back to training)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from recognition.image import load_grey

from .models import Recognition

LINE_SUFFIXES = {".png", ".jpg", ".tif", ".bmp", ".webp"}


def export_reviewed(out_dir: str | Path, since=None, statuses=("verified", "corrected")) -> dict:
    """Write NAME.png/NAME.gt.txt pairs and manifest.json; return the manifest.

    The rows are read in one query inside one transaction, so the export is a
    snapshot even while reviewers keep working; stored images never change
    (they are content-addressed), so copying them afterwards is safe.
    """
    unknown = set(statuses) - {Recognition.Status.VERIFIED, Recognition.Status.CORRECTED}
    if unknown:
        raise ValueError(f"only reviewed statuses can be exported (verified, corrected), not {', '.join(unknown)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with transaction.atomic():
        query = (Recognition.objects.filter(status__in=statuses)
                 .select_related("image", "model_version", "reviewed_by").order_by("id"))
        if since is not None:
            query = query.filter(reviewed_at__gte=since)
        rows = list(query)
    lines, seen_images = [], set()
    for r in rows:
        if r.image_id in seen_images:  # the same line reviewed twice (two models): keep the first review
            continue
        seen_images.add(r.image_id)
        name = f"r{r.pk:08d}"
        suffix = r.image.extension if r.image.extension in LINE_SUFFIXES else ".png"
        with r.image.file.open("rb") as f:
            data = f.read()
        if suffix == ".png" and r.image.extension != ".png":
            from PIL import Image

            Image.fromarray(load_grey(data)).save(out / f"{name}.png")
        else:
            (out / f"{name}{suffix}").write_bytes(data)
        (out / f"{name}.gt.txt").write_text(r.final_text + "\n", encoding="utf-8")
        lines.append({
            "name": name, "recognition_id": r.pk, "image_sha256": r.image.sha256, "status": r.status,
            "text": r.final_text, "recognised_text": r.text,
            "model": {"name": r.model_version.name, "version": r.model_version.version},
            "reviewer": r.reviewed_by.get_username() if r.reviewed_by else None,
            "reviewed_at": r.reviewed_at.isoformat() if r.reviewed_at else None,
        })
    manifest = {
        "exported_at": timezone.now().isoformat(), "since": since.isoformat() if since else None,
        "statuses": list(statuses), "lines": len(lines), "by_status": dict(Counter(l["status"] for l in lines)),
        "items": lines,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest
