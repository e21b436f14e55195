FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY publisher ./publisher
RUN pip install --no-cache-dir .
RUN useradd --create-home app
USER app
CMD ["akinon-publisher", "--help"]
