FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY publisher ./publisher
RUN pip install --no-cache-dir .
RUN useradd --create-home app
USER app
# The processes run in the user's home: beat keeps its schedule under .celery/ there (0700).
WORKDIR /home/app
CMD ["akinon-publisher", "--help"]
