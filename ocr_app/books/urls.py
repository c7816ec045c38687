from django.urls import path

from . import apis

urlpatterns = [
    path("jobs/<int:pk>/adapt/", apis.BookAdaptApi.as_view(), name="job-adapt"),
    path("jobs/<int:pk>/adaptations/", apis.BookAdaptationListApi.as_view(), name="job-adaptations"),
    path("adaptations/<int:pk>/", apis.AdaptationDetailApi.as_view(), name="adaptation-detail"),
]
