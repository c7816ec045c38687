"""The queue filters, validated once and carried from page to page as a query string."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms

from ..jobs.models import Job
from ..models import ModelVersion, Recognition
from .selectors import job_id_from

JOB_CHOICES_SHOWN = 200  # the latest jobs; an older one is still reachable as ?job=ID

STATUS_CHOICES = [(Recognition.Status.UNREVIEWED, "unreviewed"), (Recognition.Status.VERIFIED, "verified"),
                  (Recognition.Status.CORRECTED, "corrected"), ("all", "any status")]


def _model_choices():
    return [("", "any model")] + [(f"{m.name}:{m.version}", f"{m.name} {m.version}")
                                  for m in ModelVersion.objects.order_by("name", "version")]


def _job_choices(selected: str | None):
    jobs = list(Job.objects.order_by("-created_at", "-id").values_list("pk", "name")[:JOB_CHOICES_SHOWN])
    selected_id = job_id_from(selected) if selected else None
    if selected_id is not None and selected_id not in {pk for pk, _ in jobs}:
        jobs += list(Job.objects.filter(pk=selected_id).values_list("pk", "name"))
    return [("", "any job or book")] + [(str(pk), f"#{pk} {name}") for pk, name in jobs]


class QueueFilterForm(forms.Form):
    job = forms.ChoiceField(choices=(), required=False, label="Job (book)")
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False, initial=Recognition.Status.UNREVIEWED)
    model = forms.ChoiceField(choices=(), required=False)
    min_confidence = forms.FloatField(required=False, min_value=0, max_value=1, label="Confidence from",
                                      widget=forms.NumberInput(attrs={"step": "0.05", "inputmode": "decimal"}))
    max_confidence = forms.FloatField(required=False, min_value=0, max_value=1, label="Confidence to",
                                      widget=forms.NumberInput(attrs={"step": "0.05", "inputmode": "decimal"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = _model_choices()
        self.fields["job"].choices = _job_choices(self.data.get("job") if self.is_bound else None)

    def filters(self) -> dict[str, str]:
        """The valid filters as the strings ``selectors.filter_recognitions`` reads (empty ones left out)."""
        if not self.is_valid():
            return {}
        return {key: str(value) for key, value in self.cleaned_data.items() if value not in (None, "")}


def filters_from(query) -> tuple[QueueFilterForm, dict[str, str], str]:
    """The form bound to ``query``, its valid filters and them as a query string (``?...`` or '')."""
    form = QueueFilterForm(query)
    filters = form.filters()
    return form, filters, ("?" + urlencode(filters)) if filters else ""
