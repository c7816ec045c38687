"""Output shapes of the API (input is validated in the views and services)."""

from __future__ import annotations

from rest_framework import serializers

from .models import ModelVersion, Recognition

# The definitions live in recognition/ctc.py (and README, "Confidences"); these are the API docs' words.
CHARACTER_CONFIDENCE = (
    "Probability that this recognised character is right, as measured on a held-out book when the model is "
    "calibrated (its metadata carries confidence_calibration); otherwise the raw score: the highest softmax "
    "probability its class reached over the frames that emitted it. A missing character has no entry: "
    "see the line confidence.")
LINE_CONFIDENCE = (
    "Probability that the whole line is read without any error, as measured on a held-out book when the "
    "model is calibrated; otherwise the raw score exp(-E), E the expected number of errors (each character's "
    "chance of being wrong plus, per gap between characters, the chance one was dropped there). Order lines "
    "by it to review the likely wrong ones first.")


class CharacterSerializer(serializers.Serializer):
    char = serializers.CharField()
    confidence = serializers.FloatField(help_text=CHARACTER_CONFIDENCE)


class ModelRefSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()


class RecognitionSerializer(serializers.ModelSerializer):
    characters = CharacterSerializer(many=True)
    model = ModelRefSerializer(source="model_version")
    image_sha256 = serializers.CharField(source="image.sha256")
    confidence = serializers.FloatField(help_text=LINE_CONFIDENCE)
    cached = serializers.SerializerMethodField(
        help_text="true when this answer is your own earlier recognition of the same image by the same model")

    def get_cached(self, obj) -> bool:
        # Never the row's own ``cached`` flag: that one would tell a user that someone else
        # sent the same image first.
        return bool(getattr(obj, "reused", False))

    class Meta:
        model = Recognition
        fields = ["id", "text", "confidence", "characters", "model", "duration_ms", "image_sha256",
                  "created_at", "cached", "status", "corrected_text"]


class BatchItemSerializer(serializers.Serializer):
    """One entry of a batch answer: a recognition, or an error for that file."""

    index = serializers.IntegerField()
    file = serializers.CharField()
    result = RecognitionSerializer(required=False)
    error = serializers.DictField(required=False)


class ModelVersionSerializer(serializers.ModelSerializer):
    alphabet_size = serializers.SerializerMethodField()
    input_height = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["id", "name", "version", "is_active", "validation_cer", "reference_cer", "alphabet_size",
                  "input_height", "registered_at", "activated_at", "metadata"]

    def to_representation(self, instance):
        import math

        data = super().to_representation(instance)
        for key in ("validation_cer", "reference_cer"):   # a row stored before the registry refused inf/nan
            if isinstance(data.get(key), float) and not math.isfinite(data[key]):
                data[key] = None
        return data

    def get_alphabet_size(self, obj) -> int:
        import json

        return len(json.loads(obj.metadata.get("alphabet", "[]")))

    def get_input_height(self, obj) -> int:
        return int(obj.metadata.get("input_height", 0))


# The request serializers only document the requests (the views validate them). ``model``
# defaults to "" (the active model) so that the docs' "Try it out" does not send "string".
MODEL_FIELD_HELP = "name, version or name:version of a registered model; empty: the active model"


class RecognitionUploadSerializer(serializers.Serializer):
    """Documents the request: multipart ``image`` file, or JSON base64 ``image``."""

    image = serializers.FileField(help_text="the line image (multipart), or base64 / data URL in JSON")
    model = serializers.CharField(required=False, allow_blank=True, default="", help_text=MODEL_FIELD_HELP)


class BatchUploadSerializer(serializers.Serializer):
    images = serializers.ListField(child=serializers.FileField(), help_text="several files in fields named 'images'")
    model = serializers.CharField(required=False, allow_blank=True, default="", help_text=MODEL_FIELD_HELP)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="stable, machine-readable: not_an_image, invalid_filter, ...")
    message = serializers.CharField(help_text="for people")
    details = serializers.JSONField(required=False, help_text="per-field messages of a validation error")
    request_id = serializers.CharField(required=False, help_text="internal_error only: quote it when reporting")


class ErrorSerializer(serializers.Serializer):
    """Every 4xx and 5xx answer of the API."""

    error = ErrorDetailSerializer()
