FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir -e . && useradd --system fhirsrv && mkdir -p /app/var && chown fhirsrv /app/var
USER fhirsrv
EXPOSE 8080
CMD ["fhirsrv", "serve", "--host", "0.0.0.0", "--port", "8080"]
