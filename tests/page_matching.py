"""Match found lines to known lines by box IoU (used by the tests and bench.pages)."""

from __future__ import annotations


def iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def match_lines(truth_boxes, found_boxes, threshold: float = 0.5) -> dict:
    """Greedy one-to-one matching at IoU >= threshold, plus merge/split counts.

    merged: found lines holding 60% or more of each of two or more truth lines;
    split: truth lines holding 60% or more of each of two or more found lines.
    (Printed lines' ink boxes overlap where ascenders and harakat reach into
    the line above, so mere overlap proves nothing.)
    """
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth_boxes) for j, f in enumerate(found_boxes)),
                   reverse=True)
    used_t, used_f, matches = set(), set(), {}
    for score, i, j in pairs:
        if score < threshold:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            matches[i] = j

    def covered(t, f) -> float:
        x0, y0, x1, y1 = max(t[0], f[0]), max(t[1], f[1]), min(t[2], f[2]), min(t[3], f[3])
        area = (t[2] - t[0]) * (t[3] - t[1])
        return max(0, x1 - x0) * max(0, y1 - y0) / area if area else 0.0

    merged = sum(1 for f in found_boxes if sum(covered(t, f) >= 0.6 for t in truth_boxes) >= 2)
    split = sum(1 for t in truth_boxes if sum(covered(f, t) >= 0.6 for f in found_boxes) >= 2)
    return {"matches": matches, "true_positives": len(matches), "truth": len(truth_boxes),
            "found": len(found_boxes), "merged": merged, "split": split,
            "lost": len(truth_boxes) - len(matches)}
