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
]
