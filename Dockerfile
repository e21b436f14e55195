FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY publisher ./publisher
# The versions the tests passed with (constraints.txt), not whatever is newest today.
RUN pip install --no-cache-dir -c constraints.txt .
RUN useradd --create-home app
USER app
# The processes run in the user's home: beat keeps its schedule under .celery/ there (0700).
WORKDIR /home/app
CMD ["akinon-publisher", "--help"]
