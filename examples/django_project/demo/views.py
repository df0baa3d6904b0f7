from __future__ import annotations

from typing import Any

from django.contrib.auth import login, logout
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render


def dashboard(request: HttpRequest) -> HttpResponse:
    request.uptake.track("Dashboard Viewed")
    return render(request, "demo/page.html", {"title": "Dashboard"})


def reports(request: HttpRequest, report_id: int | None = None) -> HttpResponse:
    title = "Reports" if report_id is None else f"Report {report_id}"
    return render(request, "demo/page.html", {"title": title})


async def async_dashboard(request: HttpRequest) -> JsonResponse:
    state: Any = request.uptake
    nudges = await state.anudges()  # the store is read in a worker thread, off the loop
    return JsonResponse({"user": state.user_id, "nudges": [n.name for n in nudges]})


def login_view(request: HttpRequest) -> HttpResponse:
    # A demo: signs in whoever asks. A real project uses django.contrib.auth's views.
    user, _ = User.objects.get_or_create(username=request.GET.get("user", "alice"))
    login(request, user)
    return redirect("dashboard")


def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("dashboard")


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})  # skipped by uptake: health checks record nothing
