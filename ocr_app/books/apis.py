"""HTTP for book adaptation: ask for one, follow it. Reviewers only (it changes how a book is read)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from ..apis import errors
from ..jobs.models import Job
from ..review.views import IsReviewer
from ..serializers import ErrorSerializer
from . import selectors, services
from .models import BookAdaptation

ALWAYS = (401, 403, 405, 429, 500)
ADAPTATION = OpenApiResponse(OpenApiTypes.OBJECT, description=(
    "id, book, status (queued, running, accepted, rejected, failed), base_model, adapted_model, train_lines, "
    "heldout_lines, before_cer, after_cer, reference_cer, global_reference_cer, reason, progress{phase, epoch, "
    "epochs, history[]}, log, rerecognised_lines, changed_lines[], attempts, minutes, timestamps"))
CONFLICT = {409: OpenApiResponse(ErrorSerializer, description="not_enough_reviewed_lines, adaptation_in_progress or model_not_adaptable "
                                                         "(the book's model has no Keras checkpoint to fine-tune)")}


class BookAdaptApi(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(summary="Adapt the model to this book (its reviewed lines); answers at once", request=None,
                   responses={202: ADAPTATION, **CONFLICT, **errors(404, *ALWAYS)})
    def post(self, request, pk: int):
        adaptation = services.request_adaptation(get_object_or_404(Job, pk=pk), request.user)
        return Response(selectors.adaptation_body(adaptation), status=status.HTTP_202_ACCEPTED)


class BookAdaptationListApi(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(summary="A book's adaptations, newest first", operation_id="api_v1_jobs_adaptations_list",
                   responses={200: ADAPTATION, **errors(404, *ALWAYS)})
    def get(self, request, pk: int):
        job = get_object_or_404(Job, pk=pk)
        return Response([selectors.adaptation_body(a) for a in job.adaptations.select_related(
            "base_model", "adapted_model")])


class AdaptationDetailApi(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(summary="An adaptation: progress and log while it trains, before/after and verdict once done",
                   responses={200: ADAPTATION, **errors(404, *ALWAYS)})
    def get(self, request, pk: int):
        adaptation = get_object_or_404(BookAdaptation.objects.select_related("base_model", "adapted_model"), pk=pk)
        return Response(selectors.adaptation_body(adaptation))
