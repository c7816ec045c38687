"""Jobs in the admin: progress at a glance, pages and their failures."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from . import selectors
from .models import Job, Page


class PageInline(admin.TabularInline):
    model = Page
    fields = ("index", "name", "status", "line_count", "duration_ms", "attempts", "error_code", "error_message")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "user", "status", "progress", "failed", "model_version", "created_at",
                    "finished_at")
    list_filter = ("status", "model_version", "created_at")
    search_fields = ("name", "user__username")
    list_select_related = ("user", "model_version")
    readonly_fields = ("name", "user", "status", "model_version", "formats", "pages_total", "progress", "failed",
                       "eta", "created_at", "started_at", "finished_at")
    fields = readonly_fields
    inlines = [PageInline]

    def has_add_permission(self, request):
        return False   # jobs come from the API

    @admin.display(description="progress")
    def progress(self, job: Job):
        state = selectors.job_progress(job)
        finished = state["pages_done"] + state["pages_failed"] + state["pages_cancelled"]
        share = 100 * finished / job.pages_total if job.pages_total else 100
        return format_html('<progress max="100" value="{}"></progress> {} / {}', f"{share:.0f}", finished,
                           job.pages_total)

    @admin.display(description="failed pages")
    def failed(self, job: Job):
        return selectors.job_progress(job)["pages_failed"]

    @admin.display(description="ETA (s)")
    def eta(self, job: Job):
        return selectors.job_progress(job)["timings"]["eta_s"]
