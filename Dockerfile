# One image for every process: api (the default), scheduler, executor and the one-off migrate.
#   docker build -t jobservice .
#   docker run --rm -e DATABASE_URL=postgresql://... jobservice jobservice migrate       # the schema, once
#   docker run --rm -e DATABASE_URL=postgresql://... jobservice                         # the api
#   docker run --rm -e DATABASE_URL=postgresql://... jobservice jobservice executor
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The server's package only (the client is a distribution of its own, clients/python): its migrations
# travel inside it, so `jobservice migrate` needs no other file. psycopg2-binary and grpcio ship manylinux
# wheels: no compiler is needed.
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install .

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin jobs
USER jobs

# gRPC, REST (/health, /metrics), executor metrics, scheduler metrics.
EXPOSE 50051 8000 8001 8002

CMD ["jobservice", "api"]
