from django.urls import path

from . import apis

urlpatterns = [
    path("jobs/", apis.JobListCreateApi.as_view(), name="jobs"),
    path("jobs/<int:pk>/", apis.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<int:pk>/cancel/", apis.JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<int:pk>/results.zip", apis.JobResultsApi.as_view(), name="job-results"),
]
