// Command vcsim serves govmomi's vCenter simulator for vmportal's tests and benchmarks.
//
// It builds a simulator.VPX() model sized by flags, adds named VM templates (the stock model has
// none), serves it on a loopback address and prints one JSON line describing the endpoint to
// stdout. It serves until stdin is closed or it receives SIGINT/SIGTERM, so a parent process that
// dies takes the simulator with it.
//
// Behaviours of real vCenter that govmomi 0.24's simulator lacks are added here, because the
// adapter under test depends on them:
//
//   - PropertyCollector paging: RetrievePropertiesEx honours options.maxObjects (and an optional
//     server-side cap, -page-cap, as vCenter applies one of its own) and hands out a token that
//     ContinueRetrievePropertiesEx / CancelRetrievePropertiesEx accept.
//   - VirtualMachine.RebootGuest, answered by rebootGuestShim below.
//   - Clones that do not share device objects with their template (see cloneKeepingSource).
//   - WaitForUpdatesEx that does the work per changed object, not a full re-collect per update
//     (see the end of this file), with versions and InvalidCollectorVersion as vCenter has them.
//   - Fixed credentials: the stock simulator accepts any non-empty user and password, which would
//     make "wrong password" untestable.
//
// Build (GOPATH mode, Debian's golang-github-vmware-govmomi-dev):
//
//	GO111MODULE=off GOPATH=$PWD/build:/usr/share/gocode go build -o vcsim vcsim.go
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

// pagingCollector wraps the simulator's PropertyCollector with result paging.
//
// The simulator creates one collector per session by reflect.New on this type, so the zero value
// must work: pending is allocated lazily.
type pagingCollector struct {
	simulator.PropertyCollector

	pageMu  sync.Mutex
	pending map[string]pendingPage
	serial  int

	wait waitState // the change feed of WaitForUpdatesEx (see the end of this file)
}

// pendingPage is what a token stands for: the objects not yet returned and the page size.
type pendingPage struct {
	objects []types.ObjectContent
	limit   int
}

// pageCap is the server-side page limit (-page-cap); 0 leaves paging to the client's maxObjects.
var pageCap int

func (pc *pagingCollector) page(objects []types.ObjectContent, limit int) *types.RetrieveResult {
	if limit <= 0 || len(objects) <= limit {
		return &types.RetrieveResult{Objects: objects}
	}
	pc.pageMu.Lock()
	defer pc.pageMu.Unlock()
	if pc.pending == nil {
		pc.pending = make(map[string]pendingPage)
	}
	pc.serial++
	token := "page-" + strconv.Itoa(pc.serial)
	pc.pending[token] = pendingPage{objects: objects[limit:], limit: limit}
	return &types.RetrieveResult{Objects: objects[:limit], Token: token}
}

func effectiveLimit(requested int32) int {
	limit := int(requested)
	if pageCap > 0 && (limit <= 0 || limit > pageCap) {
		limit = pageCap
	}
	return limit
}

// RetrievePropertiesEx collects everything through the simulator, then returns the first page.
func (pc *pagingCollector) RetrievePropertiesEx(ctx *simulator.Context, r *types.RetrievePropertiesEx) soap.HasFault {
	res := pc.PropertyCollector.RetrievePropertiesEx(ctx, r)
	body, ok := res.(*methods.RetrievePropertiesExBody)
	if !ok || body.Res == nil || body.Res.Returnval == nil {
		return res
	}
	body.Res.Returnval = pc.page(body.Res.Returnval.Objects, effectiveLimit(r.Options.MaxObjects))
	return body
}

// ContinueRetrievePropertiesEx returns the next page for a token; an unknown token is the
// InvalidArgument fault vCenter answers with.
func (pc *pagingCollector) ContinueRetrievePropertiesEx(ctx *simulator.Context, r *types.ContinueRetrievePropertiesEx) soap.HasFault {
	body := &methods.ContinueRetrievePropertiesExBody{}
	pc.pageMu.Lock()
	rest, ok := pc.pending[r.Token]
	delete(pc.pending, r.Token)
	pc.pageMu.Unlock()
	if !ok {
		body.Fault_ = simulator.Fault("unknown token", &types.InvalidArgument{InvalidProperty: "token"})
		return body
	}
	// The page size of the first call carries over, as on vCenter.
	body.Res = &types.ContinueRetrievePropertiesExResponse{Returnval: *pc.page(rest.objects, rest.limit)}
	return body
}

func (pc *pagingCollector) CancelRetrievePropertiesEx(ctx *simulator.Context, r *types.CancelRetrievePropertiesEx) soap.HasFault {
	pc.pageMu.Lock()
	delete(pc.pending, r.Token)
	pc.pageMu.Unlock()
	return &methods.CancelRetrievePropertiesExBody{Res: &types.CancelRetrievePropertiesExResponse{}}
}

// rebootGuestThis finds the VM of a RebootGuest call (pyVmomi and govmomi both put _this first).
var rebootGuestThis = regexp.MustCompile(`<(?:\w+:)?RebootGuest\b[^>]*>\s*<(?:\w+:)?_this\b[^>]*>\s*([^<\s]+)\s*</`)

const rebootGuestResponse = `<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" ` +
	`xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" ` +
	`xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">` +
	`<soapenv:Body><RebootGuestResponse xmlns="urn:vim25"></RebootGuestResponse></soapenv:Body></soapenv:Envelope>`

// renameMethod rewrites the SOAP method element of a request body (opening and closing tag).
func renameMethod(body []byte, from, to string) []byte {
	re := regexp.MustCompile(`(</?(?:\w+:)?)` + from + `\b`)
	return re.ReplaceAll(body, []byte("${1}"+to))
}

// rebootGuestShim answers VirtualMachine.RebootGuest, which govmomi 0.24's simulator lacks, and
// keeps a clone source's devices its own (see cloneKeepingSource).
//
// Everything but the reboot itself is left to the simulator so faults stay genuine: the call is
// first replayed as RefreshStorageInfo (same session and _this: NotAuthenticated and
// ManagedObjectNotFound come back exactly as vCenter words them), and a VM that is not powered on
// is replayed as ShutdownGuest, which yields the InvalidPowerState fault vCenter raises. A running
// VM "reboots" instantly and stays poweredOn, as a guest reboot looks from the API.
func rebootGuestShim(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		replay := func(w http.ResponseWriter, b []byte) {
			clone := r.Clone(r.Context())
			clone.Body = io.NopCloser(bytes.NewReader(b))
			clone.ContentLength = int64(len(b))
			next.ServeHTTP(w, clone)
		}
		if clone := cloneThis.FindSubmatch(body); clone != nil {
			// The simulator runs the whole clone task before it answers.
			cloneKeepingSource(string(clone[1]), func() { replay(w, body) })
			return
		}
		match := rebootGuestThis.FindSubmatch(body)
		if match == nil {
			replay(w, body)
			return
		}

		probe := httptest.NewRecorder()
		replay(probe, renameMethod(body, "RebootGuest", "RefreshStorageInfo"))
		if probe.Code != http.StatusOK {
			for k, v := range probe.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(probe.Code)
			_, _ = w.Write(probe.Body.Bytes())
			return
		}

		ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: string(match[1])}
		poweredOn := false
		if vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine); ok {
			simulator.Map.WithLock(vm, func() {
				poweredOn = vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
			})
		}
		if !poweredOn {
			replay(w, renameMethod(body, "RebootGuest", "ShutdownGuest"))
			return
		}
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, rebootGuestResponse)
	})
}

// cloneThis finds the source VM of a CloneVM_Task call.
var cloneThis = regexp.MustCompile(`<(?:\w+:)?CloneVM_Task\b[^>]*>\s*<(?:\w+:)?_this\b[^>]*>\s*([^<\s]+)\s*</`)

// copyHardware returns a deep copy of a VM's virtual hardware (devices included).
func copyHardware(hw types.VirtualHardware) (types.VirtualHardware, error) {
	var dup types.VirtualHardware
	encoded, err := xml.Marshal(hw)
	if err != nil {
		return dup, err
	}
	decoder := xml.NewDecoder(bytes.NewReader(encoded))
	decoder.TypeFunc = types.TypeFunc()
	err = decoder.Decode(&dup)
	return dup, err
}

// cloneKeepingSource runs a CloneVM_Task without letting the clone share the source's devices.
//
// govmomi 0.24's CloneVM_Task hands the source's device objects (pointers) to the new VM and
// points the source's disk at the clone's file. Once that clone is destroyed, the template's disk
// names a deleted file and the next clone that edits the disk comes out without one. Here the
// source's hardware is copied before the clone and put back after it: the clone keeps the
// objects it was given, the template stays as it was, as on vCenter.
func cloneKeepingSource(id string, run func()) {
	ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: id}
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok || vm.Config == nil {
		run() // let the simulator answer (ManagedObjectNotFound and the like)
		return
	}
	var saved types.VirtualHardware
	var err error
	simulator.Map.WithLock(vm, func() { saved, err = copyHardware(vm.Config.Hardware) })
	run()
	if err != nil {
		log.Printf("clone of %s: cannot keep its devices apart: %v", id, err)
		return
	}
	simulator.Map.WithLock(vm, func() { vm.Config.Hardware = saved })
}

// templateSpec is one -templates entry: "name:guestId".
type templateSpec struct {
	Name    string
	GuestID string
}

func parseTemplates(s string) ([]templateSpec, error) {
	var specs []templateSpec
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.SplitN(item, ":", 2)
		spec := templateSpec{Name: parts[0], GuestID: string(types.VirtualMachineGuestOsIdentifierOtherGuest64)}
		if len(parts) == 2 && parts[1] != "" {
			spec.GuestID = parts[1]
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// addTemplates creates each template in DC0's "Templates" VM folder, on the first cluster (or the
// first standalone host) and marks it as a template, as an administrator would prepare one.
func addTemplates(ctx context.Context, c *vim25.Client, specs []templateSpec) (map[string]string, error) {
	refs := make(map[string]string, len(specs))
	if len(specs) == 0 {
		return refs, nil
	}
	finder := find.NewFinder(c, false)
	dc, err := finder.Datacenter(ctx, "DC0")
	if err != nil {
		return nil, err
	}
	finder.SetDatacenter(dc)
	folders, err := dc.Folders(ctx)
	if err != nil {
		return nil, err
	}
	templates, err := folders.VmFolder.CreateFolder(ctx, "Templates")
	if err != nil {
		return nil, err
	}

	var pool *object.ResourcePool
	var host *object.HostSystem
	if cluster, cerr := finder.ClusterComputeResource(ctx, "DC0_C0"); cerr == nil {
		if pool, err = cluster.ResourcePool(ctx); err != nil {
			return nil, err
		}
		hosts, herr := cluster.Hosts(ctx)
		if herr != nil || len(hosts) == 0 {
			return nil, fmt.Errorf("cluster DC0_C0 has no hosts: %v", herr)
		}
		host = hosts[0]
	} else {
		if host, err = finder.HostSystem(ctx, "DC0_H0"); err != nil {
			return nil, fmt.Errorf("templates need a cluster or a standalone host: %v", err)
		}
		if pool, err = host.ResourcePool(ctx); err != nil {
			return nil, err
		}
	}

	network, err := finder.Network(ctx, "DC0_DVPG0")
	if err != nil {
		if network, err = finder.Network(ctx, "VM Network"); err != nil {
			return nil, err
		}
	}
	backing, err := network.EthernetCardBackingInfo(ctx)
	if err != nil {
		return nil, err
	}

	for _, spec := range specs {
		var devices object.VirtualDeviceList
		scsi, err := devices.CreateSCSIController("pvscsi")
		if err != nil {
			return nil, err
		}
		devices = append(devices, scsi)
		disk := devices.CreateDisk(scsi.(types.BaseVirtualController), types.ManagedObjectReference{},
			"[LocalDS_0] "+path.Join(spec.Name, "disk1.vmdk"))
		disk.CapacityInKB = 20 * 1024 * 1024 // 20 GiB, a plausible base image
		nic, err := devices.CreateEthernetCard("vmxnet3", backing)
		if err != nil {
			return nil, err
		}
		devices = append(devices, disk, nic)
		change, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
		if err != nil {
			return nil, err
		}
		config := types.VirtualMachineConfigSpec{
			Name:         spec.Name,
			GuestId:      spec.GuestID,
			NumCPUs:      2,
			MemoryMB:     2048,
			Annotation:   "vmportal test template",
			Files:        &types.VirtualMachineFileInfo{VmPathName: "[LocalDS_0]"},
			DeviceChange: change,
		}
		task, err := templates.CreateVM(ctx, config, pool, host)
		if err != nil {
			return nil, err
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("create template %s: %v", spec.Name, err)
		}
		vm := object.NewVirtualMachine(c, info.Result.(types.ManagedObjectReference))
		if err := vm.MarkAsTemplate(ctx); err != nil {
			return nil, fmt.Errorf("mark %s as template: %v", spec.Name, err)
		}
		// The instance UUID is what the adapter uses as a VM's ref.
		if sim, ok := simulator.Map.Get(vm.Reference()).(*simulator.VirtualMachine); ok {
			refs[spec.Name] = sim.Config.InstanceUuid
		}
	}
	return refs, nil
}

// selfSignedTLS returns a TLS config with a fresh P-256 certificate for the loopback addresses.
// The simulator's built-in test certificate is RSA-1024, which OpenSSL's default security level
// rejects as too weak; clients could then never trust it, not even through a CA file.
func selfSignedTLS() (*tls.Config, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vcsim.vmportal.test", Organization: []string{"vmportal tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "", err
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}, string(certPEM), nil
}

// endpoint is the one line printed on stdout once the simulator is serving.
type endpoint struct {
	URL       string            `json:"url"`
	Host      string            `json:"host"`
	Port      int               `json:"port"`
	Username  string            `json:"username"`
	Password  string            `json:"password"`
	TLS       bool              `json:"tls"`
	CertPEM   string            `json:"cert_pem,omitempty"`
	VMs       int               `json:"vms"` // templates not included
	Hosts     int               `json:"hosts"`
	Clusters  int               `json:"clusters"`
	Templates map[string]string `json:"templates"` // name -> instance UUID
	PID       int               `json:"pid"`
}

func main() {
	log.SetPrefix("vcsim: ")
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	datacenters := flag.Int("datacenter", 1, "number of datacenters")
	clusters := flag.Int("clusters", 2, "clusters per datacenter")
	hosts := flag.Int("hosts", 2, "hosts per cluster")
	standalone := flag.Int("standalone", 1, "standalone hosts per datacenter")
	vms := flag.Int("vms", 3, "VMs per cluster and per standalone host")
	pools := flag.Int("pools", 1, "child resource pools per cluster (empty)")
	datastores := flag.Int("datastores", 1, "local datastores per datacenter")
	templatesFlag := flag.String("templates", "tpl-debian12:debian10_64Guest,tpl-win2019:windows9Server64Guest",
		"comma-separated name:guestId templates to create in DC0/vm/Templates")
	autostart := flag.Bool("autostart", true, "power on the model's VMs")
	username := flag.String("username", "administrator@vsphere.local", "the only user that may log in")
	password := flag.String("password", "vcsim-pass", "that user's password")
	useTLS := flag.Bool("tls", false, "serve https with a fresh self-signed certificate")
	flag.IntVar(&pageCap, "page-cap", 0, "server-side PropertyCollector page limit (0: client's maxObjects only)")
	flag.Parse()

	specs, err := parseTemplates(*templatesFlag)
	if err != nil {
		log.Fatal(err)
	}
	if len(specs) > 0 && *datastores < 1 {
		log.Fatal("templates need at least one datastore")
	}

	model := simulator.VPX()
	model.Datacenter = *datacenters
	model.Cluster = *clusters
	model.ClusterHost = *hosts
	model.Host = *standalone
	model.Machine = *vms
	model.Pool = *pools
	model.Datastore = *datastores
	model.Autostart = *autostart
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	defer model.Remove()

	// In-process client: requests go through Service.RoundTrip with the simulator's internal session.
	ctx := context.Background()
	client, err := vim25.NewClient(ctx, model.Service)
	if err != nil {
		log.Fatal(err)
	}
	templateRefs, err := addTemplates(ctx, client, specs)
	if err != nil {
		log.Fatal(err)
	}

	// Replace the root PropertyCollector; per-session collectors are cloned from its type.
	root := simulator.Map.Get(client.ServiceContent.PropertyCollector).(*simulator.PropertyCollector)
	pc := &pagingCollector{}
	pc.Self = root.Self
	simulator.Map.Put(pc)

	var certPEM string
	if *useTLS {
		cfg, pemText, err := selfSignedTLS()
		if err != nil {
			log.Fatal(err)
		}
		model.Service.TLS = cfg
		certPEM = pemText
	}
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*username, *password)}
	server := model.Service.NewServer()
	defer server.Close()
	// Swapped before the URL is printed, so no client can have connected yet.
	server.Config.Handler = rebootGuestShim(server.Config.Handler)

	// NewServer reports a non-loopback address when listening on 0.0.0.0; report what was bound.
	addr := server.Listener.Addr().(*net.TCPAddr)
	scheme := "http"
	if *useTLS {
		scheme = "https"
	}
	host := addr.IP.String()
	count := model.Count()
	out := endpoint{
		URL:       fmt.Sprintf("%s://%s/sdk", scheme, net.JoinHostPort(host, strconv.Itoa(addr.Port))),
		Host:      host,
		Port:      addr.Port,
		Username:  *username,
		Password:  *password,
		TLS:       *useTLS,
		CertPEM:   certPEM,
		VMs:       count.Machine - len(templateRefs),
		Hosts:     count.Host,
		Clusters:  count.Cluster,
		Templates: templateRefs,
		PID:       os.Getpid(),
	}
	line, err := json.Marshal(out)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(line))

	done := make(chan struct{})
	go func() {
		// EOF on stdin means the parent went away (or asked us to stop).
		reader := bufio.NewReader(os.Stdin)
		for {
			if _, err := reader.ReadByte(); err != nil {
				close(done)
				return
			}
		}
	}()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-done:
	case <-signals:
	}
}

// ---- WaitForUpdatesEx that scales ---------------------------------------------------------------
//
// govmomi 0.24's simulator answers WaitForUpdatesEx, but re-collects every filter in full (every VM
// of a ContainerView, with its devices) for each update of any object, tasks and events included,
// and only looks for updates every 250 ms: with 5,000 VMs one power-on takes most of a second to be
// reported, where vCenter pushes it in milliseconds. The collector below keeps the protocol (a
// complete first answer for version "", then only changes of the filter's properties; enter and
// leave as objects join or leave the filter; maxWaitSeconds; CancelWaitForUpdates answered by
// RequestCanceled; a stale version answered by InvalidCollectorVersion, as vCenter does) and does
// the work per changed object: a modify of a watched object re-reads only the watched paths it
// touched, and membership is recomputed only when a view changes or an object enters or leaves.

// waitState is one collector's change feed. The zero value works (the simulator makes session
// collectors by reflect.New): everything is allocated on first use.
type waitState struct {
	mu        sync.Mutex
	wake      chan struct{}
	cancel    chan struct{}
	updates   []types.ObjectUpdate
	listening bool
	version   int
	refs      map[types.ManagedObjectReference]map[types.ManagedObjectReference]bool // filter -> objects
}

// gatherDelay lets the updates of one operation (a task's several property changes) arrive together.
const gatherDelay = 10 * time.Millisecond

func (w *waitState) lazy() {
	if w.wake == nil {
		w.wake = make(chan struct{}, 1)
		w.cancel = make(chan struct{}, 1)
		w.refs = make(map[types.ManagedObjectReference]map[types.ManagedObjectReference]bool)
	}
}

func (w *waitState) push(u types.ObjectUpdate) {
	w.mu.Lock()
	w.lazy()
	if !w.listening {
		w.mu.Unlock()
		return
	}
	w.updates = append(w.updates, u)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (pc *pagingCollector) PutObject(o mo.Reference) {
	pc.wait.push(types.ObjectUpdate{Obj: o.Reference(), Kind: types.ObjectUpdateKindEnter})
}

func (pc *pagingCollector) UpdateObject(o mo.Reference, changes []types.PropertyChange) {
	copied := append([]types.PropertyChange(nil), changes...)
	pc.wait.push(types.ObjectUpdate{Obj: o.Reference(), Kind: types.ObjectUpdateKindModify, ChangeSet: copied})
}

func (pc *pagingCollector) RemoveObject(ref types.ManagedObjectReference) {
	pc.wait.push(types.ObjectUpdate{Obj: ref, Kind: types.ObjectUpdateKindLeave})
}

// CreatePropertyCollector hands out collectors of this type (paging and the change feed below).
func (pc *pagingCollector) CreatePropertyCollector(ctx *simulator.Context, c *types.CreatePropertyCollector) soap.HasFault {
	cpc := &pagingCollector{}
	cpc.Self.Type = "PropertyCollector"
	return &methods.CreatePropertyCollectorBody{
		Res: &types.CreatePropertyCollectorResponse{Returnval: ctx.Session.Put(cpc).Reference()},
	}
}

func (pc *pagingCollector) DestroyPropertyCollector(ctx *simulator.Context, c *types.DestroyPropertyCollector) soap.HasFault {
	pc.CancelWaitForUpdates(&types.CancelWaitForUpdates{This: c.This})
	pc.wait.mu.Lock()
	pc.wait.listening = false
	pc.wait.mu.Unlock()
	return pc.PropertyCollector.DestroyPropertyCollector(ctx, c)
}

func (pc *pagingCollector) CancelWaitForUpdates(r *types.CancelWaitForUpdates) soap.HasFault {
	pc.wait.mu.Lock()
	pc.wait.lazy()
	pc.wait.mu.Unlock()
	select {
	case pc.wait.cancel <- struct{}{}:
	default:
	}
	return &methods.CancelWaitForUpdatesBody{Res: new(types.CancelWaitForUpdatesResponse)}
}

// retrieve runs the stock, unpaged retrieve.
func (pc *pagingCollector) retrieve(ctx *simulator.Context, specs []types.PropertyFilterSpec) []types.ObjectContent {
	res := pc.PropertyCollector.RetrievePropertiesEx(ctx, &types.RetrievePropertiesEx{SpecSet: specs})
	body, ok := res.(*methods.RetrievePropertiesExBody)
	if !ok || body.Res == nil || body.Res.Returnval == nil {
		return nil
	}
	return body.Res.Returnval.Objects
}

func (pc *pagingCollector) filterSpec(ctx *simulator.Context, ref types.ManagedObjectReference) (types.PropertyFilterSpec, bool) {
	filter, ok := ctx.Session.Get(ref).(*simulator.PropertyFilter)
	if !ok || filter == nil {
		return types.PropertyFilterSpec{}, false
	}
	return filter.Spec, true
}

// paths is what a filter reads of an object of type kind.
func paths(spec types.PropertyFilterSpec, kind string) ([]string, bool) {
	for _, p := range spec.PropSet {
		if p.Type == kind {
			return p.PathSet, isTrue(p.All)
		}
	}
	return nil, false
}

func isTrue(b *bool) bool { return b != nil && *b }

// members is the set of objects a filter selects (that have properties to report): read straight
// from a ContainerView when the spec is the usual "view" traversal, else by a full collect.
func (pc *pagingCollector) members(ctx *simulator.Context, spec types.PropertyFilterSpec) map[types.ManagedObjectReference]bool {
	set := make(map[types.ManagedObjectReference]bool)
	simple := true
	for _, o := range spec.ObjectSet {
		if len(o.SelectSet) == 0 {
			if !isTrue(o.Skip) {
				if _, all := paths(spec, o.Obj.Type); all || len(pathsOf(spec, o.Obj.Type)) > 0 {
					set[o.Obj] = true
				}
			}
			continue
		}
		ts, ok := o.SelectSet[0].(*types.TraversalSpec)
		view, isView := ctx.Session.Get(o.Obj).(*simulator.ContainerView)
		if len(o.SelectSet) != 1 || !ok || ts.Path != "view" || !isView || !isTrue(o.Skip) {
			simple = false
			break
		}
		for _, ref := range view.View {
			if _, all := paths(spec, ref.Type); all || len(pathsOf(spec, ref.Type)) > 0 {
				set[ref] = true
			}
		}
	}
	if simple {
		return set
	}
	set = make(map[types.ManagedObjectReference]bool)
	for _, o := range pc.retrieve(ctx, []types.PropertyFilterSpec{spec}) {
		set[o.Obj] = true
	}
	return set
}

func pathsOf(spec types.PropertyFilterSpec, kind string) []string {
	p, _ := paths(spec, kind)
	return p
}

// read fetches some properties of some objects (one retrieve) as enter/modify updates.
func (pc *pagingCollector) read(ctx *simulator.Context, objs map[types.ManagedObjectReference][]string, kind types.ObjectUpdateKind, spec types.PropertyFilterSpec) []types.ObjectUpdate {
	if len(objs) == 0 {
		return nil
	}
	var specs []types.PropertyFilterSpec
	for obj, want := range objs {
		_, all := paths(spec, obj.Type)
		specs = append(specs, types.PropertyFilterSpec{
			ObjectSet: []types.ObjectSpec{{Obj: obj}},
			PropSet:   []types.PropertySpec{{Type: obj.Type, All: types.NewBool(all && want == nil), PathSet: want}},
		})
	}
	var out []types.ObjectUpdate
	for _, o := range pc.retrieve(ctx, specs) {
		u := types.ObjectUpdate{Obj: o.Obj, Kind: kind}
		for _, p := range o.PropSet {
			u.ChangeSet = append(u.ChangeSet, types.PropertyChange{Op: types.PropertyChangeOpAssign, Name: p.Name, Val: p.Val})
		}
		out = append(out, u)
	}
	return out
}

// initial is the complete first answer of one filter; it also records the filter's members.
func (pc *pagingCollector) initial(ctx *simulator.Context, ref types.ManagedObjectReference, spec types.PropertyFilterSpec) types.PropertyFilterUpdate {
	fu := types.PropertyFilterUpdate{Filter: ref}
	refs := make(map[types.ManagedObjectReference]bool)
	for _, o := range pc.retrieve(ctx, []types.PropertyFilterSpec{spec}) {
		refs[o.Obj] = true
		u := types.ObjectUpdate{Obj: o.Obj, Kind: types.ObjectUpdateKindEnter}
		for _, p := range o.PropSet {
			u.ChangeSet = append(u.ChangeSet, types.PropertyChange{Op: types.PropertyChangeOpAssign, Name: p.Name, Val: p.Val})
		}
		fu.ObjectSet = append(fu.ObjectSet, u)
	}
	pc.wait.mu.Lock()
	pc.wait.refs[ref] = refs
	pc.wait.mu.Unlock()
	return fu
}

// changes turns raw updates into one filter's update: modified members re-read on the watched
// paths they touched, members that joined (enter, all watched paths) or left.
func (pc *pagingCollector) changes(ctx *simulator.Context, ref types.ManagedObjectReference, spec types.PropertyFilterSpec, updates []types.ObjectUpdate) types.PropertyFilterUpdate {
	fu := types.PropertyFilterUpdate{Filter: ref}
	pc.wait.mu.Lock()
	refs := pc.wait.refs[ref]
	if refs == nil {
		refs = make(map[types.ManagedObjectReference]bool)
		pc.wait.refs[ref] = refs
	}
	pc.wait.mu.Unlock()
	membership := false
	touched := make(map[types.ManagedObjectReference]map[string]bool)
	for _, u := range updates {
		switch u.Kind {
		case types.ObjectUpdateKindEnter, types.ObjectUpdateKindLeave:
			membership = true
			continue
		}
		if u.Obj.Type == "ContainerView" {
			membership = true
			continue
		}
		if !refs[u.Obj] {
			continue
		}
		watched, all := paths(spec, u.Obj.Type)
		for _, c := range u.ChangeSet {
			for _, p := range watched {
				// The watched path itself, below it (re-read the whole path) or above it.
				if c.Name == p || strings.HasPrefix(c.Name, p+".") || strings.HasPrefix(c.Name, p+"[") || strings.HasPrefix(p, c.Name+".") {
					if touched[u.Obj] == nil {
						touched[u.Obj] = make(map[string]bool)
					}
					touched[u.Obj][p] = true
				}
			}
			if all {
				if touched[u.Obj] == nil {
					touched[u.Obj] = make(map[string]bool)
				}
				touched[u.Obj][strings.SplitN(c.Name, ".", 2)[0]] = true
			}
		}
	}
	if membership {
		now := pc.members(ctx, spec)
		joined := make(map[types.ManagedObjectReference][]string)
		for obj := range now {
			if !refs[obj] {
				joined[obj] = pathsOf(spec, obj.Type)
			}
		}
		for obj := range refs {
			if !now[obj] {
				delete(refs, obj)
				delete(touched, obj)
				fu.ObjectSet = append(fu.ObjectSet, types.ObjectUpdate{Obj: obj, Kind: types.ObjectUpdateKindLeave})
			}
		}
		for _, u := range pc.read(ctx, joined, types.ObjectUpdateKindEnter, spec) {
			refs[u.Obj] = true
			delete(touched, u.Obj)
			fu.ObjectSet = append(fu.ObjectSet, u)
		}
	}
	reread := make(map[types.ManagedObjectReference][]string)
	for obj, names := range touched {
		for name := range names {
			reread[obj] = append(reread[obj], name)
		}
	}
	fu.ObjectSet = append(fu.ObjectSet, pc.read(ctx, reread, types.ObjectUpdateKindModify, spec)...)
	return fu
}

func (pc *pagingCollector) WaitForUpdatesEx(ctx *simulator.Context, r *types.WaitForUpdatesEx) soap.HasFault {
	body := &methods.WaitForUpdatesExBody{}
	w := &pc.wait
	w.mu.Lock()
	w.lazy()
	if r.Version == "" {
		// Listen before reading, so nothing that changes during the first reading is lost.
		w.listening = true
		w.updates = nil
		w.mu.Unlock()
		ctx.Map.AddHandler(pc)
		set := &types.UpdateSet{}
		for _, ref := range pc.Filter {
			if spec, ok := pc.filterSpec(ctx, ref); ok {
				if fu := pc.initial(ctx, ref, spec); len(fu.ObjectSet) > 0 {
					set.FilterSet = append(set.FilterSet, fu)
				}
			}
		}
		w.mu.Lock()
		w.version++
		set.Version = strconv.Itoa(w.version)
		w.mu.Unlock()
		body.Res = &types.WaitForUpdatesExResponse{Returnval: set}
		return body
	}
	if !w.listening || r.Version != strconv.Itoa(w.version) {
		w.mu.Unlock()
		body.Fault_ = simulator.Fault("unknown version "+r.Version, &types.InvalidCollectorVersion{})
		return body
	}
	w.mu.Unlock()

	var timeout <-chan time.Time
	once := false
	if r.Options != nil && r.Options.MaxWaitSeconds != nil {
		if *r.Options.MaxWaitSeconds <= 0 {
			once = true
		} else {
			timer := time.NewTimer(time.Duration(*r.Options.MaxWaitSeconds) * time.Second)
			defer timer.Stop()
			timeout = timer.C
		}
	}
	for {
		w.mu.Lock()
		pending := w.updates
		w.updates = nil
		w.mu.Unlock()
		if len(pending) > 0 {
			set := &types.UpdateSet{}
			for _, ref := range pc.Filter {
				if spec, ok := pc.filterSpec(ctx, ref); ok {
					if fu := pc.changes(ctx, ref, spec, pending); len(fu.ObjectSet) > 0 {
						set.FilterSet = append(set.FilterSet, fu)
					}
				}
			}
			if len(set.FilterSet) > 0 {
				w.mu.Lock()
				w.version++
				set.Version = strconv.Itoa(w.version)
				w.mu.Unlock()
				body.Res = &types.WaitForUpdatesExResponse{Returnval: set}
				return body
			}
		}
		if once {
			body.Res = &types.WaitForUpdatesExResponse{}
			return body
		}
		select {
		case <-w.wake:
			time.Sleep(gatherDelay)
		case <-w.cancel:
			body.Fault_ = simulator.Fault("", new(types.RequestCanceled))
			return body
		case <-timeout:
			body.Res = &types.WaitForUpdatesExResponse{}
			return body
		}
	}
}
