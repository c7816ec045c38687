from django.urls import path

from . import views

app_name = "books"

urlpatterns = [
    path("", views.books_page, name="list"),
    path("<int:pk>/", views.book_page, name="book"),
    path("<int:pk>/adapt", views.adapt, name="adapt"),
]
