"""Output shapes of the API (input is validated in the views and services)."""

from __future__ import annotations

from rest_framework import serializers

from .models import ModelVersion, Recognition


class CharacterSerializer(serializers.Serializer):
    char = serializers.CharField()
    confidence = serializers.FloatField()


class ModelRefSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()


class RecognitionSerializer(serializers.ModelSerializer):
    characters = CharacterSerializer(many=True)
    model = ModelRefSerializer(source="model_version")
    image_sha256 = serializers.CharField(source="image.sha256")

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

    def get_alphabet_size(self, obj) -> int:
        import json

        return len(json.loads(obj.metadata.get("alphabet", "[]")))

    def get_input_height(self, obj) -> int:
        return int(obj.metadata.get("input_height", 0))


class RecognitionUploadSerializer(serializers.Serializer):
    """Documents the request: multipart ``image`` file, or JSON base64 ``image``."""

    image = serializers.FileField(help_text="the line image (multipart), or base64 / data URL in JSON")
    model = serializers.CharField(required=False, help_text="name, version or name:version of a registered model")


class BatchUploadSerializer(serializers.Serializer):
    images = serializers.ListField(child=serializers.FileField(), help_text="several files in fields named 'images'")
    model = serializers.CharField(required=False)
