"""Review in the Django admin: see the line, read the prediction, fix it."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from . import services
from .models import ModelVersion, Recognition, StoredImage


class ConfidenceBand(admin.SimpleListFilter):
    title = "confidence"
    parameter_name = "confidence_band"
    BANDS = {"low": (0.0, 0.5), "medium": (0.5, 0.9), "high": (0.9, 1.01)}

    def lookups(self, request, model_admin):
        return [("low", "low (< 0.5)"), ("medium", "medium (0.5-0.9)"), ("high", "high (>= 0.9)")]

    def queryset(self, request, queryset):
        if self.value() in self.BANDS:
            low, high = self.BANDS[self.value()]
            return queryset.filter(confidence__gte=low, confidence__lt=high)
        return queryset


def _rtl(text: str):
    return format_html('<div dir="rtl" lang="ar" style="font-size:1.3em;text-align:right">{}</div>', text)


class RecognitionReviewForm(forms.ModelForm):
    reviewed_text = forms.CharField(
        required=True, strip=True, label="Reviewed text",
        widget=forms.Textarea(attrs={"dir": "rtl", "lang": "ar", "rows": 2, "style": "font-size:1.4em;width:90%"}),
        help_text="What the line really says. Change it and save to store a correction.",
        error_messages={"required": "The reviewed text cannot be empty: type what the line says, or leave the "
                                    "recognition unreviewed."},
    )
    mark_verified = forms.BooleanField(
        required=False, label="The text above is correct: mark verified",
        help_text="Saving without a change and without this box changes nothing.",
    )

    class Meta:
        model = Recognition
        fields = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["reviewed_text"].initial = self.instance.final_text

    def clean(self):
        cleaned = super().clean()
        text = cleaned.get("reviewed_text")
        if text is not None:
            try:
                services.checked_review_text(text)
            except services.ReviewError as exc:
                self.add_error("reviewed_text", exc.message)
        return cleaned


@admin.register(Recognition)
class RecognitionAdmin(admin.ModelAdmin):
    form = RecognitionReviewForm
    list_display = ("id", "thumbnail", "text_rtl", "confidence", "model_version", "status", "user", "created_at")
    list_filter = ("status", ConfidenceBand, "model_version", "created_at")
    search_fields = ("text", "corrected_text", "image__sha256")
    date_hierarchy = "created_at"
    list_select_related = ("image", "model_version", "user")
    readonly_fields = ("line_image", "text_rtl", "confidence", "model_version", "duration_ms", "user", "created_at",
                       "status", "reviewed_by", "reviewed_at", "other_models")
    fields = ("line_image", "text_rtl", "reviewed_text", "confidence", "status", "model_version", "other_models",
              "duration_ms", "user", "created_at", "reviewed_by", "reviewed_at")
    actions = ["mark_verified", "rerun_on_active_model", "export_csv"]

    def has_add_permission(self, request):
        return False  # recognitions come from the API, which runs the model

    @admin.display(description="line")
    def thumbnail(self, obj):
        return format_html('<img src="{}" style="max-height:36px;max-width:360px">', obj.image.file.url)

    @admin.display(description="line image")
    def line_image(self, obj):
        return format_html('<img src="{}" style="max-width:100%;border:1px solid #ccc">', obj.image.file.url)

    @admin.display(description="recognised text")
    def text_rtl(self, obj):
        return _rtl(obj.text)

    @admin.display(description="same image, other models")
    def other_models(self, obj):
        others = (Recognition.objects.filter(image=obj.image).exclude(model_version=obj.model_version)
                  .select_related("model_version").order_by("model_version_id", "-created_at")
                  .distinct())
        rows = {}
        for other in others:
            rows.setdefault(other.model_version, other)
        if not rows:
            return "none yet (use the action 'Re-run on the active model')"
        # Every value is escaped: a model's name comes from its file, which anyone can craft.
        return format_html_join(
            "", '<p><b>{} {}</b> ({}): <span dir="rtl" lang="ar">{}</span></p>',
            ((v.name, v.version, f"{r.confidence:.2f}", r.text) for v, r in rows.items()))

    def save_model(self, request, obj, form, change):
        text = form.cleaned_data["reviewed_text"]
        if services.normalized_review_text(text) != obj.final_text:
            services.review(obj, request.user, text)
        elif form.cleaned_data.get("mark_verified"):
            services.review(obj, request.user)
        # else: nothing changed and nothing was asked; verifying is never implied by a save

    @admin.action(description="Mark selected as verified (recognised text is correct)")
    def mark_verified(self, request, queryset):
        verified, skipped = 0, []
        for recognition in queryset:
            if recognition.status != Recognition.Status.UNREVIEWED:
                skipped.append(f"#{recognition.pk} (already {recognition.status})")
                continue
            services.review(recognition, request.user)
            verified += 1
        self.message_user(request, f"{verified} recognitions marked verified.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped {len(skipped)}, reviewed before (open one to change its review): "
                                       + ", ".join(skipped), messages.WARNING)

    @admin.action(description="Export selected as CSV (select all to export the filtered list)")
    def export_csv(self, request, queryset):
        from .csv_export import csv_response

        return csv_response(queryset.order_by("id"))

    @admin.action(description="Re-run on the active model (to compare models)")
    def rerun_on_active_model(self, request, queryset):
        active = services.choose_model(None)
        skipped = [f"#{r.pk}" for r in queryset if r.model_version_id == active.pk]
        created = services.rerun_on_active_model(list(queryset), request.user)
        self.message_user(request, f"{len(created)} recognitions made with the active model.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped {len(skipped)}, already read by the active model "
                                       f"{active.name} {active.version}: " + ", ".join(skipped), messages.WARNING)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "is_active", "validation_cer", "reference_cer", "registered_at",
                    "activated_at")
    list_filter = ("is_active", "name")
    readonly_fields = ("name", "version", "path", "sha256", "metadata", "validation_cer", "reference_cer",
                       "is_active", "registered_at", "activated_at")
    actions = ["activate"]

    def has_add_permission(self, request):
        return False  # models are registered from files: manage.py register_model

    @admin.action(description="Activate the selected model (no quality gate; use register_model for that)")
    def activate(self, request, queryset):
        from .registry import activate_version

        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model to activate.", messages.ERROR)
            return
        activate_version(queryset.get())
        self.message_user(request, f"{queryset.get()} is now active.", messages.SUCCESS)  # messages are escaped


@admin.register(StoredImage)
class StoredImageAdmin(admin.ModelAdmin):
    list_display = ("sha256", "width", "height", "size_bytes", "created_at")
    search_fields = ("sha256",)
    readonly_fields = ("sha256", "file", "extension", "width", "height", "size_bytes", "created_at")

    def has_add_permission(self, request):
        return False
from .jobs import admin as _jobs_admin  # noqa: E402,F401  (registers the jobs admin)
