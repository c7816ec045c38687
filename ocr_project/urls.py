from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from ocr_app import apis

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("ocr_app.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api-auth/", include("rest_framework.urls")),
    path("healthz", apis.healthz, name="healthz"),
    path("readyz", apis.readyz, name="readyz"),
    # Line images for the admin's thumbnails: staff only, see ocr_app.admin.
    path("media/<path:path>", admin.site.admin_view(apis.staff_media)),
    # The review workspace's books and their adaptation (ocr_app/books), then the rest of it.
    path("review/books/", include("ocr_app.books.review_urls")),
    # The upload page at /, sign-in, and the review workspace at /review/.
    path("", include("ocr_app.web.urls")),
]

handler404 = "ocr_app.middleware.not_found"
handler500 = "ocr_app.middleware.server_error"
