from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("pages/<int:pk>/thumbnail.png", views.page_thumbnail_image, name="page-thumbnail"),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="ocr_app/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("review/", include("ocr_app.review.urls")),
]
