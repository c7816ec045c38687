"""Reviewed predictions out as a training dataset (the loop back to training)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from recognition.image import IMAGE_SUFFIXES, load_grey

from .models import Recognition


def export_reviewed(out_dir: str | Path, since=None, statuses=("verified", "corrected"), replace: bool = False) -> dict:
    """Write NAME.png/NAME.gt.txt pairs and manifest.json into ``out_dir``; return the manifest.

    A folder that is not empty is refused, or with ``replace`` replaced whole:
    pairs left from an earlier export would otherwise be read by training as if
    they were part of this one. The export is written beside it and swapped in
    at the end, so a failure leaves the old folder as it was.
    """
    unknown = set(statuses) - {Recognition.Status.VERIFIED, Recognition.Status.CORRECTED}
    if unknown:
        raise ValueError(f"only reviewed statuses can be exported (verified, corrected), not {', '.join(unknown)}")
    target = Path(out_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not replace:
        raise ValueError(f"{target} is not empty; choose a new folder, or --replace to replace it whole")
    target.parent.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        manifest = _write_export(out, since, statuses)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        out.rename(target)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        out.rename(target)
    return manifest


def _write_export(out: Path, since, statuses) -> dict:
    """The snapshot: rows read in one query inside one transaction, so the export is consistent even
    while reviewers keep working; stored images never change (content-addressed), so copying them
    afterwards is safe."""
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
        suffix = r.image.extension if r.image.extension in IMAGE_SUFFIXES else ".png"
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
