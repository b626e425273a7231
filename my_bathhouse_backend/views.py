from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class MeView(APIView):
    """Who am I? A protected endpoint to try an access token against."""

    def get(self, request: Request) -> Response:
        return Response({"username": request.user.get_username()})
