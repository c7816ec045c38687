"""Review in the Django admin: see the line, read the prediction, fix it."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

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
        required=False, label="Reviewed text",
        widget=forms.Textarea(attrs={"dir": "rtl", "lang": "ar", "rows": 2, "style": "font-size:1.4em;width:90%"}),
        help_text="What the line really says. Leave as recognised and save to mark it verified.",
    )

    class Meta:
        model = Recognition
        fields = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["reviewed_text"].initial = self.instance.final_text


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
    actions = ["mark_verified", "rerun_on_active_model"]

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
        return format_html("".join(
            f'<p><b>{v.name} {v.version}</b> ({r.confidence:.2f}): <span dir="rtl" lang="ar">{{}}</span></p>'
            for v, r in rows.items()), *[r.text for r in rows.values()])

    def save_model(self, request, obj, form, change):
        services.review(obj, request.user, form.cleaned_data.get("reviewed_text", ""))

    @admin.action(description="Mark selected as verified (recognised text is correct)")
    def mark_verified(self, request, queryset):
        count = 0
        for recognition in queryset.filter(status=Recognition.Status.UNREVIEWED):
            services.review(recognition, request.user)
            count += 1
        self.message_user(request, f"{count} recognitions marked verified.", messages.SUCCESS)

    @admin.action(description="Re-run on the active model (to compare models)")
    def rerun_on_active_model(self, request, queryset):
        created = services.rerun_on_active_model(list(queryset), request.user)
        self.message_user(request, f"{len(created)} recognitions made with the active model.", messages.SUCCESS)


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
        self.message_user(request, f"{queryset.get()} is now active.", messages.SUCCESS)


@admin.register(StoredImage)
class StoredImageAdmin(admin.ModelAdmin):
    list_display = ("sha256", "width", "height", "size_bytes", "created_at")
    search_fields = ("sha256",)
    readonly_fields = ("sha256", "file", "extension", "width", "height", "size_bytes", "created_at")

    def has_add_permission(self, request):
        return False
