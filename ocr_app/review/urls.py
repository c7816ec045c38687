from django.urls import path

from . import views

app_name = "review"

urlpatterns = [
    path("", views.queue_page, name="queue"),
    path("start/", views.start, name="start"),
    path("lines/<int:pk>/", views.line_page, name="line"),
    path("lines/<int:pk>/image", views.line_image, name="line-image"),
    path("lines/<int:pk>/save", views.SaveLineApi.as_view(), name="save"),
    path("lines/<int:pk>/skip", views.SkipLineApi.as_view(), name="skip"),
]
