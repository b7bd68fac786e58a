package cckmtest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// cmError is CipherTrust Manager's error body.
type cmError struct {
	Code      int    `json:"code"`
	CodeDesc  string `json:"codeDesc"`
	Message   string `json:"message"`
	RequestID string `json:"requestID"`
}

// errorKind is the code and description CipherTrust Manager uses for one kind of error.
type errorKind struct {
	code     int
	codeDesc string
	message  string
}

// errorKinds maps HTTP statuses to CM error codes. 400, 401, 404, 409 and 5xx follow codes
// seen in CM clients and mocks; the others are plausible inventions.
var errorKinds = map[int]errorKind{
	http.StatusBadRequest:          {9, "NCERRInvalidParamValue: Invalid parameter value", "Invalid parameter value"},
	http.StatusUnauthorized:        {5, "NCERRUnauthorizedAccess: Unauthorized", "Unauthorized"},
	http.StatusForbidden:           {6, "NCERRForbidden: Forbidden", "Forbidden"},
	http.StatusNotFound:            {16, "NCERRResourceNotFound: Resource not found", "Resource not found"},
	http.StatusMethodNotAllowed:    {9, "NCERRMethodNotAllowed: Method not allowed", "Method not allowed"},
	http.StatusRequestTimeout:      {14, "NCERRRequestTimeout: Request timeout", "Request timeout"},
	http.StatusConflict:            {10, "NCERRConflict: job is not in progress", "job is not in progress"},
	http.StatusUnprocessableEntity: {9, "NCERRInvalidParamValue: Unprocessable entity", "Unprocessable entity"},
	http.StatusTooManyRequests:     {14, "NCERRTooManyRequests: Too many requests", "Too many requests"},
	http.StatusInternalServerError: {14, "NCERRInternalServerError: unexpected error", "unexpected error"},
	http.StatusBadGateway:          {14, "NCERRBadGateway: Bad gateway", "Bad gateway"},
	http.StatusServiceUnavailable:  {14, "NCERRServiceUnavailable: Service unavailable", "Service unavailable"},
	http.StatusGatewayTimeout:      {14, "NCERRGatewayTimeout: Gateway timeout", "Gateway timeout"},
}

// cmErrorFor returns the error body for status, with message replacing the default
// message when not empty.
func cmErrorFor(status int, message string) cmError {
	kind, known := errorKinds[status]
	if !known {
		text := http.StatusText(status)
		if text == "" {
			text = "HTTP " + strconv.Itoa(status)
		}
		kind = errorKind{1, "NCERRUnknown: " + text, text}
	}
	if message == "" {
		message = kind.message
	}
	return cmError{Code: kind.code, CodeDesc: kind.codeDesc, Message: message, RequestID: newUUID()}
}

// writeCMError answers status with a CM error body and returns status.
func writeCMError(w http.ResponseWriter, status int, message string) int {
	return writeJSON(w, status, cmErrorFor(status, message))
}

// writeJSON answers status with value encoded as JSON and returns status.
func writeJSON(w http.ResponseWriter, status int, value any) int {
	body, err := json.Marshal(value)
	if err != nil {
		status = http.StatusInternalServerError
		body, _ = json.Marshal(cmErrorFor(status, err.Error()))
	}
	return writeRaw(w, status, body)
}

// writeRaw answers status with body as JSON content and returns status.
func writeRaw(w http.ResponseWriter, status int, body []byte) int {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status
}

// sizedMessage returns message made exactly size bytes long: cut, or followed by a space and
// as many "x" as it takes. A size of zero or less leaves it as it is.
func sizedMessage(message string, size int) string {
	switch {
	case size <= 0 || size == len(message):
		return message
	case size <= len(message)+1:
		return (message + " ")[:size]
	}
	return message + " " + strings.Repeat("x", size-len(message)-1)
}
