# Image for the stream workers (used by docker-compose.kafka.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY preagg ./preagg
COPY detectors ./detectors
COPY models ./models
COPY streams ./streams
COPY benchmarks ./benchmarks
RUN pip install --no-cache-dir .
USER 65534
ENTRYPOINT ["patrol"]
