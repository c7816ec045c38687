from django.urls import path

from . import apis
from .books.urls import urlpatterns as book_urlpatterns
from .jobs.urls import urlpatterns as job_urlpatterns
from .pages.urls import urlpatterns as page_urlpatterns

app_name = "ocr_app"

urlpatterns = [
    path("recognitions/", apis.RecognitionListCreateApi.as_view(), name="recognitions"),
    path("recognitions/batch/", apis.RecognitionBatchApi.as_view(), name="recognitions-batch"),
    path("recognitions/<int:pk>/", apis.RecognitionDetailApi.as_view(), name="recognition-detail"),
    path("models/", apis.ModelListApi.as_view(), name="models"),
    *job_urlpatterns,
    *page_urlpatterns,
    *book_urlpatterns,
]
