"""The CAS endpoints under ``/cas/``, where campus CAS servers usually live."""

from django.urls import include, path

urlpatterns = [path("cas/", include("cas_server.urls", namespace="cas_server"))]
