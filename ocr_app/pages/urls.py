from django.urls import path

from . import apis

urlpatterns = [
    path("pages/", apis.PageCreateApi.as_view(), name="pages"),
    path("pages/<int:pk>/", apis.PageDetailApi.as_view(), name="page-detail"),
]
